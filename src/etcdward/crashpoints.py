"""Named crash points for tests: `ETCDWARD_TEST_CRASH_AT=<name>` makes the controller kill
itself with SIGKILL when it reaches that point (its etcd dies with it via PDEATHSIG), which is
how the crash-safety tests stop a join at an exact step. No effect when the variable is unset.

Points: join-before-post, join-after-add, join-after-etcd-start, join-after-promotion.
"""

from __future__ import annotations

import os
import signal


def crashpoint(name: str) -> None:
    if os.environ.get("ETCDWARD_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


async def crashpoint_after(name: str, delay: float) -> None:
    """Like crashpoint, but first lets the process run on for `delay` seconds (only when armed)."""
    if os.environ.get("ETCDWARD_TEST_CRASH_AT") == name:
        import asyncio

        await asyncio.sleep(delay)
        crashpoint(name)
