"""Translating backend errors into the :class:`BigFileError` tree, in one place."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
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

_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
# botocore's and azure.core's permanent errors, by class name
_STORE_REFUSED = {"ClientError", "NoCredentialsError", "EndpointConnectionError",
                  "ParamValidationError", "HttpResponseError", "ResourceExistsError",
                  "ResourceNotModifiedError", "DecodeError"}
_STORE_NOT_FOUND = {"ResourceNotFoundError"}
_STORE_FORBIDDEN = {"ClientAuthenticationError"}
# a condition on the target's ETag failed: another writer changed it (Azure's 412)
_STORE_CHANGED = {"ResourceModifiedError"}


def translate(exc: BaseException) -> BigFileError | None:
    """The BigFileError for a backend exception, or None if it is not an I/O failure."""
    if isinstance(exc, BigFileError):
        return exc
    from airflow_bigfile.io.retry import is_transient

    if is_transient(exc):
        return TransientStorageError(f"{_what(exc)}; nothing was changed, and the "
                                     f"engine's retries are spent: run the job again later")
    if isinstance(exc, FileNotFoundError):
        return TargetNotFoundError(f"{exc.filename or exc}: no such file or object")
    if isinstance(exc, OSError):
        message = _what(exc)
        if exc.errno in _PERMISSION or isinstance(exc, PermissionError):
            return TargetPermissionError(message + "; nothing was changed")
        error = StorageError(message + "; nothing was changed")
        error.errno = exc.errno
        return error
    name = type(exc).__name__
    what = str(exc).splitlines()[0] if str(exc) else name
    if name in _STORE_CHANGED:
        return SourceChangedError(f"the target changed while it was being edited ({what}); "
                                  f"nothing was committed")
    if name in _STORE_NOT_FOUND:
        return TargetNotFoundError(f"the object store found no such object: {what}")
    if name in _STORE_FORBIDDEN:
        return TargetPermissionError(f"the object store refused the credentials: {what}; "
                                     f"nothing was changed")
    if name in _STORE_REFUSED:
        return StorageError(f"the object store refused: {what}; nothing was changed")
    return None


def _what(exc: BaseException) -> str:
    """An I/O error in one line: where, what and its errno name."""
    if not isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}"
    where = f"{exc.filename}: " if exc.filename else ""
    name = errno.errorcode.get(exc.errno or 0, "")
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}{what}" + (f" ({name})" if name else "")


def translated(fn: F) -> F:
    """Decorate an entry point so backend errors leave it as BigFileErrors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BigFileError:
            raise
        except Exception as exc:
            mapped = translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    return wrapper  # type: ignore[return-value]
