"""Minimal reproductions of product bugs found by the scenario suite (no root, no etcd).

Each test is marked xfail with the bug; it starts passing (XPASS) once the product is fixed,
and then the marker (and the harness's tolerance for the symptom) should go.
"""
from __future__ import annotations

import asyncio

import pytest

from etcdward.lease import KeptLease


class _Store:
    """The three lease calls KeptLease makes; refresh_lease goes through asyncio.wait_for
    exactly as Store._call does, and answers when the test says so."""

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


@pytest.mark.xfail(strict=False, reason=(
    "product bug: KeptLease.close() cancels the keep-alive task and awaits it; when the cancel lands in the "
    "loop iteration in which a keep-alive answer completes, asyncio.wait_for (Python 3.11, used by "
    "Store._call) returns the answer instead of raising CancelledError, _keep() loops on, and close() waits "
    "forever: the reconciler hangs in campaign()/resign() and the controller ignores SIGTERM"))
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
