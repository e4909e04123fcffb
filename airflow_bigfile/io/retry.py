"""Scheduling retries of transient failures with tenacity.

What is transient is decided by the error policy, :func:`airflow_bigfile.io.errors.
is_transient`; this module only says how often and how long to wait: 5 attempts,
exponential backoff with jitter, a warning logged before each wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_bigfile.io.errors import is_transient

if TYPE_CHECKING:
    import tenacity

log = logging.getLogger(__name__)
T = TypeVar("T")


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


# Made on first use (importing tenacity is slow); tests swap it for one that never sleeps.
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
