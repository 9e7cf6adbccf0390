"""Stopping tasks for sure (regression: a controller that ignored SIGTERM).

Python 3.11's asyncio.wait_for returns a result instead of raising CancelledError when the
cancel lands in the iteration the result completes; a keep-alive loop then ran on and
KeptLease.close() waited forever. The fake store below answers at exactly that moment (no
etcd can be made to do so on cue: a race at an exact line is what mocks are for here)."""

from __future__ import annotations

import asyncio

from etcdward.lease import KeptLease
from etcdward.tasks import cancel_and_wait


class RacyStore:
    def __init__(self) -> None:
        self.answer: asyncio.Future[int] | None = None

    async def grant_lease(self, ttl: int) -> int:
        return 0x1234

    async def refresh_lease(self, lease_id: int) -> int:
        self.answer = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(self._rpc(), 5)

    async def _rpc(self) -> int:
        assert self.answer is not None
        return await self.answer

    async def revoke_lease(self, lease_id: int) -> None:
        return None


async def test_lease_close_returns_when_the_cancel_races_a_keepalive_answer() -> None:
    store = RacyStore()
    lease = KeptLease(store, 2)  # type: ignore[arg-type]
    await lease.grant()
    while store.answer is None:
        await asyncio.sleep(0.05)
    store.answer.set_result(2)
    await asyncio.sleep(0)
    await asyncio.wait_for(lease.close(revoke=False), 5)


async def test_cancel_and_wait_cancels_a_task_that_swallows_one_cancel() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.set()  # what the wait_for race amounts to
        await asyncio.sleep(60)

    t = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([t], each=0.1), 5)
    assert swallowed.is_set() and t.cancelled()
