"""Stopping tasks for sure (regression: a controller that ignored SIGTERM).

Python 3.11's asyncio.wait_for returns a result instead of raising CancelledError when the
cancel lands in the iteration the result completes; a keep-alive loop then ran on and
KeptLease.close() waited forever. The fake store below answers at exactly that moment (no
etcd can be made to do so on cue: a race at an exact line is what mocks are for here).

Found by the scenario suite (fixed in 0fc45f0): the reconciler hung in campaign()/resign() and
the controller ignored SIGTERM; tests/scenarios/host.py reports any such stop hang."""

from __future__ import annotations

import asyncio

from etcdward.lease import KeptLease
from etcdward.tasks import cancel_and_wait


class RacyStore:
    """The three lease calls KeptLease makes; refresh_lease goes through asyncio.wait_for as
    Store._call did before the fix (so the cancellation can still be swallowed here: close()
    has to cope by cancelling again), and answers when the test says so."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[int] | None = None
        self.refreshes = 0

    async def grant_lease(self, ttl: int) -> int:
        return 0x1234

    async def refresh_lease(self, lease_id: int) -> int:
        self.refreshes += 1
        self.answer = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(self._rpc(), 5)

    async def _rpc(self) -> int:
        assert self.answer is not None
        return await self.answer

    async def revoke_lease(self, lease_id: int) -> None:
        return None


async def test_lease_close_returns_when_the_cancel_races_a_keepalive_answer() -> None:
    store = RacyStore()
    lease = KeptLease(store, 2)  # type: ignore[arg-type]  # keep-alive every 0.5 s
    await lease.grant()
    while store.answer is None:  # the keeper is inside refresh_lease now
        await asyncio.sleep(0.05)
    store.answer.set_result(2)  # the keep-alive answer arrives ...
    await asyncio.sleep(0)  # (the rpc task finishes; wait_for's waiter is released)
    closing = asyncio.create_task(lease.close(revoke=False))  # ... in the iteration close() cancels
    done, _ = await asyncio.wait({closing}, timeout=5)
    task = lease._task
    if not done:  # do not leave the stuck keeper behind for the next test
        closing.cancel()
        if task is not None:
            task.cancel()  # cancel again, now that it sleeps: it ends
    assert done, f"KeptLease.close() did not return within 5s; keeper {task!r}, {store.refreshes} refreshes"


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
