"""The error policy (``airflow_bigfile.io.errors``) is complete and says one thing.

As httpx's ``test_httpcore_all_exceptions_mapped`` does for httpcore: every exception class
the backends can raise (the standard library's ``OSError`` tree, ``ssl``, botocore,
aiohttp, fsspec, and azure.core where it is installed), found by walking their modules, is
mapped to a definite class of the tree, transient or permanent; then the deciders by errno,
HTTP status and S3 code, the cause chain, and translation once.
"""

from __future__ import annotations

import builtins
import errno
import importlib
import importlib.util
import ssl
from collections.abc import Iterator

import pytest

from airflow_bigfile.exceptions import (
    BigFileError,
    SourceChangedError,
    StorageError,
    TargetNotFoundError,
    TargetPermissionError,
    TransientStorageError,
)
from airflow_bigfile.io.errors import (
    RULES,
    call_translated,
    decide,
    is_transient,
    rule_for,
    translate,
    translated,
)
from tests.faulty import FAULTS, PERMANENT, TRANSIENT

#: the modules whose exceptions reach the engine (azure.core only with the Azure extra)
BACKENDS = ["ssl", "botocore.exceptions", "aiohttp", "aiohttp.client_exceptions",
            "fsspec.exceptions", "s3fs.errors", "azure.core.exceptions"]
#: never raised to a filesystem's caller: aiohttp's end-of-stream signal (caught inside
#: aiohttp) and its websocket errors (no fsspec backend opens websockets)
NOT_RAISED = {"aiohttp.streams.EofStream", "aiohttp._websocket.models.WebSocketError",
              "aiohttp.client_exceptions.WSMessageTypeError"}
#: the classes that must be transient (the rest of a module may be either)
MUST_BE_TRANSIENT = {
    "builtins.ConnectionResetError", "builtins.ConnectionAbortedError",
    "builtins.ConnectionRefusedError", "builtins.BrokenPipeError", "builtins.TimeoutError",
    "builtins.InterruptedError", "builtins.BlockingIOError", "ssl.SSLEOFError",
    "botocore.exceptions.EndpointConnectionError", "botocore.exceptions.ConnectTimeoutError",
    "botocore.exceptions.ReadTimeoutError", "botocore.exceptions.ConnectionClosedError",
    "botocore.exceptions.ResponseStreamingError",
    "aiohttp.client_exceptions.ServerDisconnectedError",
    "aiohttp.client_exceptions.ClientOSError", "aiohttp.client_exceptions.ServerTimeoutError",
    "aiohttp.client_exceptions.ClientPayloadError",
    "fsspec.exceptions.FSTimeoutError"}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _backend_exceptions() -> Iterator[type[BaseException]]:
    """Every exception class of the installed backends, and every ``OSError``,
    ``ConnectionError`` and ``TimeoutError`` of the standard library."""
    yield from (v for v in vars(builtins).values()
                if isinstance(v, type) and issubclass(v, OSError | TimeoutError))
    installed = [m for m in BACKENDS if importlib.util.find_spec(m.split(".")[0])]
    assert {"ssl", "botocore.exceptions", "aiohttp"} <= set(installed)
    for module in map(importlib.import_module, installed):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) \
                    and not issubclass(value, Warning) and _name(value) not in NOT_RAISED \
                    and value.__module__.split(".")[0] != "builtins":
                yield value


def test_every_backend_exception_is_mapped() -> None:
    classes = set(_backend_exceptions())
    assert len(classes) > 100
    unmapped = sorted(_name(c) for c in classes if rule_for(c) is None)
    assert not unmapped, f"backend exceptions the error policy does not map: {unmapped}"
    for cls in classes:
        rule = rule_for(cls)
        assert isinstance(rule, type) and issubclass(rule, BigFileError) or callable(rule)


def test_the_rules_name_real_classes() -> None:
    """A misspelt rule would silently map nothing: each names a class that exists where
    its backend is installed."""
    for name, rule in RULES.items():
        module, _, cls = name.rpartition(".")
        if module != "builtins" and not importlib.util.find_spec(module.split(".")[0]):
            continue  # azure.core without the Azure extra
        assert isinstance(getattr(importlib.import_module(module), cls), type), name
        assert isinstance(rule, type) and issubclass(rule, BigFileError) or callable(rule)


def test_connection_failures_are_transient() -> None:
    found = {_name(c): c for c in _backend_exceptions()}
    assert set(found) >= MUST_BE_TRANSIENT
    for name in MUST_BE_TRANSIENT:
        assert rule_for(found[name]) is TransientStorageError, name


@pytest.mark.parametrize(("code", "expected"), [
    (errno.EIO, StorageError), (errno.ENOSPC, StorageError), (errno.EDQUOT, StorageError),
    (errno.EACCES, TargetPermissionError), (errno.EROFS, TargetPermissionError),
    (errno.ENOENT, TargetNotFoundError),
    (errno.ECONNRESET, TransientStorageError), (errno.ETIMEDOUT, TransientStorageError),
    (errno.EAGAIN, TransientStorageError), (errno.EBUSY, TransientStorageError),
    (errno.EHOSTUNREACH, TransientStorageError),
])
def test_oserror_by_errno(code: int, expected: type[BigFileError]) -> None:
    mapped = translate(OSError(code, "boom", "/data/x.csv"))
    assert type(mapped) is expected
    assert isinstance(mapped, OSError) and mapped.errno == code


def _client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


@pytest.mark.parametrize(("status", "code", "expected"), [
    (503, "SlowDown", TransientStorageError), (500, "InternalError", TransientStorageError),
    (502, "", TransientStorageError), (504, "", TransientStorageError),
    (429, "TooManyRequests", TransientStorageError), (408, "", TransientStorageError),
    (400, "RequestTimeTooSkewed", TransientStorageError),
    (501, "NotImplemented", StorageError), (400, "InvalidArgument", StorageError),
    (403, "AccessDenied", TargetPermissionError), (401, "", TargetPermissionError),
    (404, "NoSuchKey", TargetNotFoundError), (412, "PreconditionFailed", SourceChangedError),
])
def test_http_answers(status: int, code: str, expected: type[BigFileError]) -> None:
    """botocore's ClientError, raw and as s3fs translates it (an OSError raised from it),
    and aiohttp's ClientResponseError map by status and S3 code."""
    from aiohttp import ClientResponseError, RequestInfo
    from multidict import CIMultiDict, CIMultiDictProxy
    from s3fs.errors import translate_boto_error
    from yarl import URL

    raw = _client_error(status, code)
    assert type(translate(raw)) is expected
    wrapped = translate_boto_error(raw)
    assert is_transient(wrapped) == (expected is TransientStorageError)
    assert type(translate(wrapped)) is expected
    info = RequestInfo(URL("http://127.0.0.1/b/k"), "GET", CIMultiDictProxy(CIMultiDict()))
    if not code or code in ("NotImplemented", "AccessDenied", "NoSuchKey"):
        answer = ClientResponseError(info, (), status=status)
        assert type(translate(answer)) is expected


def test_the_chain_decides_what_is_transient() -> None:
    """A backend error raised from a transient one is transient (s3fs's OSError from a
    503); an error that is no storage failure is not, whatever it was raised from; a
    BigFileError is already decided."""
    try:
        try:
            raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
        except ssl.SSLError as inner:
            raise OSError(errno.EIO, "read failed") from inner
    except OSError as outer:
        wrapped = outer
    assert decide(wrapped) is StorageError and is_transient(wrapped)
    assert type(translate(wrapped)) is TransientStorageError
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "reset")
        except ConnectionError:
            raise KeyError("a bug while handling it")  # noqa: B904
    except KeyError as bug:
        assert not is_transient(bug) and translate(bug) is None
    decided = StorageError("permanent")
    decided.__cause__ = ConnectionResetError()
    assert not is_transient(decided) and translate(decided) is decided
    assert is_transient(TransientStorageError("lost"))


@pytest.mark.parametrize("kind", list(FAULTS))
def test_faults_translate_once(kind: str) -> None:
    """What the entry points raise is translated once: a BigFileError whose cause is the
    backend's own error, never another BigFileError."""
    fault = FAULTS[kind]()

    @translated
    def entry_point() -> None:
        raise fault

    with pytest.raises(BigFileError) as info:
        entry_point()
    assert info.value.__cause__ is fault
    assert isinstance(info.value, TransientStorageError) == (kind in TRANSIENT)
    assert kind in TRANSIENT + PERMANENT
    assert "\n" not in str(info.value) and "nothing was changed" in str(info.value)


def test_other_exceptions_are_not_translated() -> None:
    @translated
    def entry_point() -> None:
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        entry_point()


def _fail_as_s3fs_does_on_a_500() -> None:
    raise FAULTS["500"]()


def test_errors_keep_their_decision_across_processes() -> None:
    """A pickled exception loses its cause: s3fs's OSError(EREMOTEIO) raised from a 500
    would reach the parent as a permanent EIO. Work sent to processes or Dask runs through
    call_translated, so it arrives decided."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        raw = pool.submit(_fail_as_s3fs_does_on_a_500).exception()
        decided = pool.submit(call_translated, _fail_as_s3fs_does_on_a_500).exception()
    assert isinstance(raw, OSError) and not is_transient(raw)
    assert isinstance(decided, TransientStorageError)
    assert "InternalError" in str(decided) or "internal error" in str(decided)
