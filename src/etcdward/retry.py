"""One retry helper: a deadline, a backoff schedule given as data, jitter, and the exception
types that mean "try again later". Used for every retry in etcdward."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# Seconds between attempts; the last value repeats. Membership changes need seconds, not
# milliseconds: etcd refuses adds for ~5 s after every membership change.
MEMBERSHIP_BACKOFF: tuple[float, ...] = (0.2, 0.3, 0.5, 0.5)
JOIN_BACKOFF: tuple[float, ...] = (0.5, 1, 2, 3, 5)


class RetryAfter(Exception):
    """Raised by an operation that knows how long to wait (e.g. an HTTP Retry-After)."""

    def __init__(self, message: str, after: float) -> None:
        super().__init__(message)
        self.after = after


async def retry(
    op: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    deadline: float,
    backoff: Sequence[float] = MEMBERSHIP_BACKOFF,
    jitter: float = 0.1,
    what: str = "operation",
) -> T:
    """Run op until it succeeds, raises something not in retry_on, or the deadline (seconds
    from now) would pass before the next attempt; then the last error is raised."""
    end = time.monotonic() + deadline
    attempt = 0
    while True:
        try:
            return await op()
        except retry_on as exc:
            delay = exc.after if isinstance(exc, RetryAfter) else backoff[min(attempt, len(backoff) - 1)]
            delay *= 1 + random.uniform(-jitter, jitter)
            attempt += 1
            if time.monotonic() + delay > end:
                raise
            log.debug("%s attempt %d failed (%s); retrying in %.2fs", what, attempt, exc, delay)
            await asyncio.sleep(delay)
