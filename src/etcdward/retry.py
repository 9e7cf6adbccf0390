"""The one retry helper: every retry in etcdward goes through `retry()`.

What is retried is decided by the failure vocabulary (`errors.py`): a `Temporary` error is tried
again, anything else ends the loop at once. The wait between attempts comes from a backoff
schedule given as data (the last value repeats), with jitter, unless the error says how long
to wait (`Temporary.after`, e.g. a server's Retry-After), which is honoured up to `max_after`.
The deadline is honoured in full: the last wait ends at the deadline, with one more attempt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from .errors import Temporary

T = TypeVar("T")
log = logging.getLogger(__name__)

# Seconds between attempts; the last value repeats. Membership changes need seconds, not
# milliseconds: etcd refuses adds for ~5 s after every membership change.
MEMBERSHIP_BACKOFF: tuple[float, ...] = (0.2, 0.3, 0.5, 0.5)
MAX_AFTER = 120.0


def next_delay(exc: BaseException, attempt: int, backoff: Sequence[float], jitter: float) -> float:
    after = getattr(exc, "after", None)
    if isinstance(after, (int, float)) and math.isfinite(after) and 0 <= after <= MAX_AFTER:
        delay = float(after)
    else:  # none given, negative, NaN or absurd: our own schedule
        delay = backoff[min(attempt, len(backoff) - 1)]
    return max(0.05, delay * (1 + random.uniform(-jitter, jitter)))


async def retry(
    op: Callable[[], Awaitable[T]],
    *,
    deadline: float,
    backoff: Sequence[float] = MEMBERSHIP_BACKOFF,
    jitter: float = 0.1,
    what: str = "operation",
    retry_on: tuple[type[BaseException], ...] = (Temporary,),
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> T:
    """Run op until it succeeds, raises something not in retry_on, or `deadline` seconds from
    now have passed; then the last error is raised. on_retry(error, attempt, delay) is called
    before each wait (for progress lines); otherwise each retry is logged at DEBUG."""
    end = time.monotonic() + deadline
    attempt = 0
    while True:
        try:
            return await op()
        except retry_on as exc:
            attempt += 1
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise
            delay = min(next_delay(exc, attempt - 1, backoff, jitter), remaining)
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            else:
                log.debug("%s attempt %d failed (%s); retrying in %.2fs", what, attempt, exc, delay)
            await asyncio.sleep(delay)
