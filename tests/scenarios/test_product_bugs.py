"""Minimal reproductions of product bugs found by the scenario suite (no root, no etcd).

A bug still open is marked xfail with its description; once fixed, the marker goes and the
test stays as a regression test.

- KeptLease.close() hang (fixed in 0fc45f0): close() cancels the keep-alive task and awaits
  it; when the cancel landed in the loop iteration in which a keep-alive answer completed,
  asyncio.wait_for (Python 3.11, then used by Store._call) returned the answer instead of
  raising CancelledError, _keep() looped on and close() waited forever: the reconciler hung in
  campaign()/resign() and the controller ignored SIGTERM.
"""
from __future__ import annotations

import asyncio

from etcdward.lease import KeptLease


class _Store:
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


async def test_lease_close_when_keepalive_answer_arrives() -> None:
    store = _Store()
    lease = KeptLease(store, 2)  # type: ignore[arg-type]  # keep-alive every 0.5 s
    await lease.grant()
    while store.answer is None:  # the keeper is inside refresh_lease now
        await asyncio.sleep(0.05)
    store.answer.set_result(2)  # the keep-alive answer arrives ...
    await asyncio.sleep(0)  # (the rpc task finishes; wait_for's waiter is released)
    closing = asyncio.create_task(lease.close(revoke=False))  # ... in the iteration close() cancels
    done, _ = await asyncio.wait({closing}, timeout=3)
    task = lease._task
    if not done:
        closing.cancel()
        if task is not None:
            task.cancel()  # cancel again, now that it sleeps: it ends
    assert done, f"KeptLease.close() did not return within 3s; keeper {task!r}, {store.refreshes} refreshes"
