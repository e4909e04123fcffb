"""Fault injection through a faulty fsspec wrapper: transient errors are retried and the
edit succeeds; EIO and ENOSPC fail cleanly with the target intact."""

from __future__ import annotations

import random

import fsspec
import pytest

from airflow_bigfile import (
    Append,
    BigFileError,
    Patch,
    Replace,
    StorageError,
    TransientStorageError,
    edit_file,
)
from airflow_bigfile.io import retry as retry_module
from tests.faulty import TRANSIENT, FaultyFileSystem

fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)

DATA = bytes(random.Random(7).choice(b"ab\n") for _ in range(5000))
EDITS = [Replace(b"aab", b"Q"), Patch(10, b"ZZ"), Append(b"END")]
EXPECTED = (DATA[:10] + b"ZZ" + DATA[12:]).replace(b"aab", b"Q") + b"END"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries never sleep in tests."""
    monkeypatch.setattr(retry_module, "DEFAULT", retry_module.policy(sleep=lambda s: None))


@pytest.fixture
def target() -> str:
    mem = fsspec.filesystem("memory")
    mem.pipe("/faults/data.bin", DATA)
    yield "faulty::memory://faults/data.bin"
    mem.rm("/faults", recursive=True)


def _expected_model() -> bytes:
    data = DATA[:10] + b"ZZ" + DATA[12:]
    assert data[10:12] == b"ZZ"
    return EXPECTED


def _content() -> bytes:
    return fsspec.filesystem("memory").cat("/faults/data.bin")


def _leftovers() -> list[str]:
    return [p for p in fsspec.filesystem("memory").find("/faults") if p != "/faults/data.bin"]


def _total_calls(target: str) -> int:
    FaultyFileSystem.reset()
    edit_file(target, EDITS, shard_size=512, workers=1)
    calls = FaultyFileSystem.calls
    fsspec.filesystem("memory").pipe("/faults/data.bin", DATA)
    return calls


def test_clean_run_matches_model(target: str) -> None:
    FaultyFileSystem.reset()
    edit_file(target, EDITS, shard_size=512, workers=1)
    assert _content() == _expected_model()


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_faults_are_retried(target: str, kind: str) -> None:
    total = _total_calls(target)
    for call in range(1, total + 1):
        fsspec.filesystem("memory").pipe("/faults/data.bin", DATA)
        # fail this call and the retry after it: two transient faults in a row
        FaultyFileSystem.reset({call: kind, call + 1: kind})
        edit_file(target, EDITS, shard_size=512, workers=1)
        assert _content() == EXPECTED, f"{kind} at call {call}"
        assert _leftovers() == []


@pytest.mark.parametrize("kind", ["EIO", "ENOSPC"])
def test_permanent_faults_fail_cleanly(target: str, kind: str) -> None:
    total = _total_calls(target)
    failed = 0
    for call in range(1, total + 1):
        fsspec.filesystem("memory").pipe("/faults/data.bin", DATA)
        FaultyFileSystem.reset({call: kind})
        try:
            edit_file(target, EDITS, shard_size=512, workers=1)
        except BigFileError as exc:
            failed += 1
            assert isinstance(exc, StorageError), f"{kind} at call {call}: {exc!r}"
            message = str(exc)
            assert ("Input/output" in message) if kind == "EIO" else ("No space" in message)
            assert "\n" not in message
            assert _content() == DATA, f"target changed after {kind} at call {call}"
        else:
            # the fault hit a call whose failure does not matter (cleanup of a leftover)
            assert _content() == EXPECTED
        FaultyFileSystem.reset()
        assert _leftovers() == [], f"leftovers after {kind} at call {call}"
    assert failed > total // 2


@pytest.mark.parametrize("kind", TRANSIENT)
def test_retries_are_bounded_then_the_error_is_transient(target: str, kind: str) -> None:
    """A connection lost for good from the 3rd call on outlives the engine's retries and
    leaves ``edit_file`` as a TransientStorageError (a StorageError: the job may be run
    again later), never as the raw backend error and never as a permanent one."""
    FaultyFileSystem.reset({n: kind for n in range(3, 1000)})
    with pytest.raises(TransientStorageError, match="run the job again later") as info:
        edit_file(target, EDITS, shard_size=512, workers=1)
    assert isinstance(info.value, StorageError)
    FaultyFileSystem.reset()
    assert _content() == DATA and _leftovers() == []


def test_the_error_mapping_is_complete() -> None:
    """Every fault the wrapper can raise maps to exactly one class of the tree: the
    transient ones to TransientStorageError, the others to a permanent StorageError."""
    from airflow_bigfile.io.errors import translate
    from tests.faulty import FAULTS

    for kind, make in FAULTS.items():
        mapped = translate(make())
        assert isinstance(mapped, StorageError), kind
        assert isinstance(mapped, TransientStorageError) == (kind in TRANSIENT), kind


def test_azure_errors_are_classified() -> None:
    """azure.core's exceptions: lost connections, timeouts, throttling and 5xx answers are
    transient; a failed ETag condition means the target changed; the rest are permanent."""
    core = pytest.importorskip("azure.core.exceptions")
    from airflow_bigfile.exceptions import (
        SourceChangedError,
        TargetNotFoundError,
        TargetPermissionError,
    )
    from airflow_bigfile.io.errors import translate

    def status(cls: type, code: int) -> Exception:
        exc = cls(message=f"status {code}")
        exc.status_code = code
        return exc

    expected = {
        core.ServiceRequestError("connection refused"): TransientStorageError,
        core.ServiceResponseError("connection reset"): TransientStorageError,
        status(core.HttpResponseError, 503): TransientStorageError,
        status(core.HttpResponseError, 500): TransientStorageError,
        status(core.HttpResponseError, 429): TransientStorageError,
        status(core.HttpResponseError, 400): StorageError,
        status(core.ResourceExistsError, 409): StorageError,
        status(core.ResourceModifiedError, 412): SourceChangedError,
        status(core.ResourceNotFoundError, 404): TargetNotFoundError,
        status(core.ClientAuthenticationError, 403): TargetPermissionError,
    }
    for exc, cls in expected.items():
        mapped = translate(exc)
        assert type(mapped) is cls, (exc, mapped)
        assert str(exc).splitlines()[0] in str(mapped)


@pytest.mark.parametrize("kind", ["reset", "EIO"])
def test_operators_let_airflow_retry_only_transient_errors(target: str, kind: str) -> None:
    pytest.importorskip("airflow")
    from airflow.sdk.exceptions import AirflowFailException
    from airflow_bigfile.operators import BigFileEditOperator

    op = BigFileEditOperator(task_id="edit", path=target, shard_size=512, workers=1,
                             edits=[{"op": "replace", "find": "aab", "replace": "Q"}])
    FaultyFileSystem.reset({n: kind for n in range(3, 1000)})
    expected = TransientStorageError if kind == "reset" else AirflowFailException
    with pytest.raises(expected) as info:
        op.execute({})
    assert not isinstance(info.value, AirflowFailException) or kind == "EIO"
    FaultyFileSystem.reset()
    assert _content() == DATA
