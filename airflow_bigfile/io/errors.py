"""The error policy, whole: which backend failures are transient, which are permanent, and
the :class:`BigFileError` each becomes.

Who retries what:

1. The engine: its requests to a remote store (source reads, staging files, listings,
   uploads, multipart calls; a stream commit as a whole) go through
   :func:`~airflow_bigfile.io.retry.retried`, which retries what :func:`is_transient` calls
   transient (tenacity: 5 attempts, exponential backoff with jitter). Local system calls
   are not retried; the kernel already restarts what it can.
2. The entry points (:mod:`airflow_bigfile.api`, decorated with :func:`translated`) and
   the work they send to other processes (:func:`call_translated`) turn whatever is left
   into the BigFileError tree, once, ``raise ... from`` the backend error:
   a transient failure becomes :class:`TransientStorageError` (nothing was changed; run the
   job again later), anything else a permanent class.
3. The Airflow operators let a :class:`TransientStorageError` propagate, so Airflow's task
   retries apply, and fail every other BigFileError at once (``AirflowFailException``).

How an exception is classified: the first class of its MRO named in :data:`RULES` decides,
either directly (a class of the tree) or by what it carries (an errno, an HTTP status, an
S3 error code). A backend error raised from another (s3fs raises ``OSError(EREMOTEIO)``
from botocore's ``ClientError`` 500; botocore's ``SSLError`` from ``ssl.SSLEOFError``) is
transient when any error of its ``__cause__``/``__context__`` chain is, and a generic
``OSError`` takes the more precise class of the error it was raised from (s3fs's
``OSError(EINVAL)`` from a 412 is a :class:`SourceChangedError`). An exception no rule
names (``TypeError``, ``KeyError``...) is not a storage failure: it is never retried and
leaves untranslated, with its traceback, because it is a bug.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from airflow_bigfile.exceptions import (
    BigFileError,
    SourceChangedError,
    StorageError,
    TargetNotFoundError,
    TargetPermissionError,
    TransientStorageError,
)

F = TypeVar("F", bound=Callable[..., Any])

#: what a rule decides: a class of the tree, or a function of the exception that gives one
Rule = type[BigFileError] | Callable[[BaseException], type[BigFileError]]

TRANSIENT_ERRNOS = frozenset({
    errno.EINTR, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED,
    errno.ECONNREFUSED, errno.EPIPE, errno.EBUSY, errno.ENETDOWN, errno.ENETUNREACH,
    errno.ENETRESET, errno.EHOSTUNREACH, errno.EHOSTDOWN})
PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

#: HTTP answers worth trying again: a request timeout, throttling, and the server's own
#: failures (5xx) but "not implemented" and "version not supported", which stay so
TRANSIENT_STATUSES = frozenset({408, 429} | set(range(500, 600)) - {501, 505})
PERMISSION_STATUSES = frozenset({401, 403})
#: S3 error codes that are transient whatever the status says
TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "TooManyRequests", "RequestLimitExceeded",
    "OperationAborted"})


def _by_errno(exc: BaseException) -> type[BigFileError]:
    code = getattr(exc, "errno", None)
    if code in TRANSIENT_ERRNOS:
        return TransientStorageError
    if code in PERMISSION_ERRNOS:
        return TargetPermissionError
    if code == errno.ENOENT:
        return TargetNotFoundError
    return StorageError


def answer(exc: BaseException) -> tuple[int | None, str]:
    """The HTTP status and service error code a client exception carries (botocore's
    ``response`` dict, aiohttp's ``status``, azure.core's ``status_code``/``error_code``)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = response.get("Error", {}).get("Code", "")
    else:
        status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
        code = getattr(exc, "error_code", None) or ""
    return (status if isinstance(status, int) else None), str(code)


def _by_status(exc: BaseException) -> type[BigFileError]:
    status, code = answer(exc)
    if code in TRANSIENT_CODES or status in TRANSIENT_STATUSES:
        return TransientStorageError
    if status in PERMISSION_STATUSES:
        return TargetPermissionError
    if status == 404:
        return TargetNotFoundError
    if status == 412:  # a conditional write (If-Match on the planned ETag) was refused
        return SourceChangedError
    return StorageError


#: ``module.Class`` -> rule; modules are named, never imported, so a backend that is not
#: installed costs nothing. Order does not matter: an exception's MRO is walked from its
#: own class up, and the first class named here decides.
RULES: dict[str, Rule] = {
    # the standard library
    "builtins.ConnectionError": TransientStorageError,
    "builtins.TimeoutError": TransientStorageError,
    "builtins.InterruptedError": TransientStorageError,
    "builtins.BlockingIOError": TransientStorageError,
    "builtins.FileNotFoundError": TargetNotFoundError,
    "builtins.PermissionError": TargetPermissionError,
    "builtins.OSError": _by_errno,
    "ssl.SSLEOFError": TransientStorageError,
    "ssl.SSLZeroReturnError": TransientStorageError,
    "ssl.SSLSyscallError": TransientStorageError,
    "ssl.SSLWantReadError": TransientStorageError,
    "ssl.SSLWantWriteError": TransientStorageError,
    "ssl.SSLError": StorageError,  # certificates, protocol versions: configuration
    # botocore (s3fs translates its ClientError into OSErrors, raised from it)
    "botocore.exceptions.ClientError": _by_status,
    "botocore.exceptions.ConnectionError": TransientStorageError,
    "botocore.exceptions.HTTPClientError": TransientStorageError,
    "botocore.exceptions.IncompleteReadError": TransientStorageError,
    "botocore.exceptions.SSLError": StorageError,
    "botocore.exceptions.NoCredentialsError": TargetPermissionError,
    "botocore.exceptions.PartialCredentialsError": TargetPermissionError,
    "botocore.exceptions.CredentialRetrievalError": TargetPermissionError,
    "botocore.exceptions.BotoCoreError": StorageError,
    "botocore.exceptions.UndefinedModelAttributeError": StorageError,
    # aiohttp (s3fs through aiobotocore, gcsfs, adlfs, HTTP)
    "aiohttp.client_exceptions.ClientResponseError": _by_status,
    "aiohttp.client_exceptions.ClientSSLError": StorageError,
    "aiohttp.client_exceptions.ServerFingerprintMismatch": StorageError,
    "aiohttp.client_exceptions.ClientConnectionError": TransientStorageError,
    "aiohttp.client_exceptions.ClientPayloadError": TransientStorageError,
    "aiohttp.client_exceptions.ClientError": StorageError,
    # fsspec (its FSTimeoutError is a TimeoutError)
    "fsspec.exceptions.BlocksizeMismatchError": StorageError,
    # azure.core (adlfs, Azure Blob)
    "azure.core.exceptions.ServiceRequestError": TransientStorageError,
    "azure.core.exceptions.ServiceResponseError": TransientStorageError,
    "azure.core.exceptions.IncompleteReadError": TransientStorageError,
    "azure.core.exceptions.ClientAuthenticationError": TargetPermissionError,
    "azure.core.exceptions.ResourceNotFoundError": TargetNotFoundError,
    "azure.core.exceptions.ResourceModifiedError": SourceChangedError,
    "azure.core.exceptions.HttpResponseError": _by_status,
    "azure.core.exceptions.AzureError": StorageError,
    # a request or an answer that does not fit the service's model (ValueErrors, not
    # AzureErrors): retrying sends or gets the same
    "azure.core.exceptions.SerializationError": StorageError,
    "azure.core.exceptions.DeserializationError": StorageError,
}


def rule_for(cls: type[BaseException]) -> Rule | None:
    """The rule that decides for exceptions of class ``cls``, or None if none does."""
    for klass in cls.__mro__:
        rule = RULES.get(f"{klass.__module__}.{klass.__qualname__}")
        if rule is not None:
            return rule
    return None


def decide(exc: BaseException) -> type[BigFileError] | None:
    """The class of the tree ``exc`` itself maps to (its chain aside), or None if it is
    not a storage failure."""
    if isinstance(exc, BigFileError):
        return type(exc)
    rule = rule_for(type(exc))
    if rule is None or isinstance(rule, type):
        return rule
    return rule(exc)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the error it was raised from, and so on (each once)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)


def is_transient(exc: BaseException) -> bool:
    """Whether trying again may succeed: ``exc`` is a storage failure and it, or an error
    of its chain, is transient. A BigFileError is already decided: only
    :class:`TransientStorageError` is transient."""
    if isinstance(exc, BigFileError):
        return isinstance(exc, TransientStorageError)
    if decide(exc) is None:
        return False
    return any(not isinstance(link, BigFileError) and decide(link) is TransientStorageError
               for link in _chain(exc))


def translate(exc: BaseException) -> BigFileError | None:
    """The BigFileError for a backend exception (``exc`` itself if it is one already), or
    None if it is not a storage failure."""
    if isinstance(exc, BigFileError):
        return exc
    cls = decide(exc)
    if cls is None:
        return None
    if is_transient(exc):
        cls = TransientStorageError
    elif cls is StorageError:  # a generic OSError: the error it was raised from may say more
        cls = next((d for d in map(decide, _chain(exc)) if d not in (None, StorageError)), cls)
    what = _what(exc)
    if cls is TransientStorageError:
        error: BigFileError = cls(f"{what}; nothing was changed, and the engine's retries "
                                  f"are spent: run the job again later")
    elif cls is TargetNotFoundError:
        error = cls(f"{getattr(exc, 'filename', None) or exc}: no such file or object")
    elif cls is SourceChangedError:
        error = cls(f"{what}: the target changed since it was planned; nothing was changed")
    else:
        error = cls(f"{what}; nothing was changed")
    if isinstance(error, OSError) and isinstance(exc, OSError):
        error.errno = exc.errno
    return error


def _what(exc: BaseException) -> str:
    """A backend error in one line: where, what and its errno name or HTTP status."""
    if not isinstance(exc, OSError):
        status, code = answer(exc)
        if status is not None or code:
            return f"the store answered {status or ''} {code}: {exc}".replace("  ", " ")
        return f"{type(exc).__name__}: {exc}"
    where = f"{exc.filename}: " if exc.filename else ""
    # an ssl error's errno is the SSL library's code, not an errno
    name = "" if type(exc).__module__ == "ssl" else errno.errorcode.get(exc.errno or 0, "")
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}{what}" + (f" ({name})" if name else "")


def call_translated(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, with a backend error leaving it as its BigFileError, raised
    from the backend error itself.

    Entry points run through it (:func:`translated`), and so does work sent to another
    process or a Dask worker: an exception crossing a process loses its ``__cause__`` and
    ``__context__`` when pickled, and with them what made it transient."""
    try:
        return fn(*args, **kwargs)
    except BigFileError:
        raise
    except Exception as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc


def translated(fn: F) -> F:
    """Decorate an entry point so backend errors leave it as BigFileErrors, translated
    once, from the backend error itself."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call_translated(fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
