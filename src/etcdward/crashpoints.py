"""Named crash points for tests: `ETCDWARD_TEST_CRASH_AT=<name>` makes the controller kill
itself with SIGKILL when it reaches that point (its etcd dies with it via PDEATHSIG), which is
how the crash-safety tests stop a join at an exact step. No effect when the variable is unset.

Points: join-before-post, join-after-add, join-after-etcd-start, join-after-promotion.

`ETCDWARD_TEST_DELAY_AT=<name>:<seconds>` instead makes the controller pause that long at a
point (a slow step, not a crash). Points: join-before-etcd-start, liveness-beat (a stalled loop for /livez).
"""

from __future__ import annotations

import asyncio
import os
import signal


def crashpoint(name: str) -> None:
    if os.environ.get("ETCDWARD_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


async def crashpoint_after(name: str, delay: float) -> None:
    """Like crashpoint, but first lets the process run on for `delay` seconds (only when armed)."""
    if os.environ.get("ETCDWARD_TEST_CRASH_AT") == name:
        await asyncio.sleep(delay)
        crashpoint(name)


async def delay_point(name: str) -> None:
    """Pause `seconds` at this point when ETCDWARD_TEST_DELAY_AT=<name>:<seconds> names it."""
    point, _, seconds = os.environ.get("ETCDWARD_TEST_DELAY_AT", "").partition(":")
    if point == name:
        await asyncio.sleep(float(seconds or 0))
