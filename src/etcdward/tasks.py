"""Stopping asyncio tasks for sure.

Python 3.11's asyncio.wait_for can swallow a cancellation that lands in the same loop
iteration as the awaited result (fixed in 3.12): a task looping over such calls then keeps
running after cancel(), and whoever awaits it - a controller stopping on SIGTERM - waits
forever. So: cancel, wait briefly, cancel again, and never wait unboundedly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], attempts: int = 20, each: float = 0.5) -> None:
    pending = {t for t in tasks if not t.done()}
    for _ in range(attempts):
        if not pending:
            break
        for t in pending:
            t.cancel()
        done, pending = await asyncio.wait(pending, timeout=each)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.debug("task %s ended with %r while stopping", t.get_name(), t.exception())
    for t in pending:
        log.error("task %s did not stop after %d cancellations; abandoning it", t.get_name(), attempts)
