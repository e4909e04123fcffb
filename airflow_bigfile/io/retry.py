"""Retrying transient I/O errors with tenacity; permanent ones fail at once.

Transient: interrupted or would-block calls, timeouts, dropped connections, a store's
throttling and 5xx answers. Permanent: no space, no permission, EIO, a CRC mismatch, and
everything else; those are reported, never retried.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_bigfile.exceptions import BigFileError

if TYPE_CHECKING:
    import tenacity

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_ERRNOS = {errno.EINTR, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET,
                    errno.ECONNABORTED, errno.EPIPE, errno.EBUSY}
TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                   "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable",
                   "503", "500", "502", "504", "TooManyRequests", "429"}
# HTTP statuses worth retrying on stores whose errors carry a status_code (Azure)
TRANSIENT_STATUSES = {408, 429}
# connection-level failures, by class name (botocore, aiohttp, azure.core)
TRANSIENT_NAMES = {"EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                   "ConnectTimeoutError", "ServerDisconnectedError", "ClientOSError",
                   "ServiceRequestError", "ServiceResponseError", "ServiceRequestTimeoutError",
                   "ServiceResponseTimeoutError", "IncompleteReadError"}


def is_transient(exc: BaseException) -> bool:
    """Whether retrying ``exc`` may succeed."""
    if isinstance(exc, BigFileError):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in TRANSIENT_STATUSES or status >= 500
    return type(exc).__name__ in TRANSIENT_NAMES


def policy(attempts: int = 5, initial: float = 0.05, maximum: float = 2.0,
           sleep: Callable[[float], None] | None = None) -> tenacity.Retrying:
    """The retry policy: ``attempts`` tries, exponential backoff with jitter."""
    import tenacity

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial),
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
        sleep=sleep or tenacity.nap.sleep,
        reraise=True,
    )


# Made on first use (importing tenacity costs ~60 ms); tests swap it for one that never
# sleeps.
DEFAULT: tenacity.Retrying | None = None


def retried(fn: Callable[..., T], *args: Any, retrying: tenacity.Retrying | None = None,
            **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)``, retrying transient failures."""
    global DEFAULT
    if retrying is None:
        if DEFAULT is None:
            DEFAULT = policy()
        retrying = DEFAULT
    return retrying(fn, *args, **kwargs)
