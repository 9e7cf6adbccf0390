"""A lease kept alive in the background, with an honest local view of whether it still holds.

`valid` turns False as soon as the last confirmed keep-alive is older than the TTL minus a
margin, even if etcd cannot be asked (partition): a holder must stop acting before etcd
could have let the lease expire and handed its keys to someone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .store import Store
from .tasks import cancel_and_wait
from .store import errors as E

log = logging.getLogger(__name__)


class KeptLease:
    """keep=False: someone else renews it (the liveness loop, election.Liveness) and says so
    with confirm(); this object then only tells whether it still holds."""

    def __init__(self, store: Store, ttl: int, keep: bool = True) -> None:
        self.store = store
        self.ttl = ttl
        self.keep = keep
        self.id = 0
        self._confirmed = 0.0
        self._task: asyncio.Task[None] | None = None
        self._granted = asyncio.Event()

    def confirm(self, sent_at: float) -> None:
        """A keep-alive sent at `sent_at` (time.monotonic()) was answered: the lease holds."""
        self._confirmed = max(self._confirmed, sent_at)

    async def until_valid(self, timeout: float) -> bool:
        """Wait up to timeout for a grant (by whoever renews it); whether it is valid then."""
        if not self.valid:
            self._granted.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._granted.wait()
        return self.valid

    @property
    def valid(self) -> bool:
        return self.valid_for() > 0

    def valid_for(self) -> float:
        """Seconds until `valid` turns False unless a keep-alive is confirmed (0: not valid)."""
        if self.id == 0:
            return 0.0
        return max(0.0, self.ttl * 0.8 - (time.monotonic() - self._confirmed))

    async def grant(self) -> int:
        t0 = time.monotonic()
        self.id = await self.store.grant_lease(self.ttl)
        self._confirmed = t0
        self._granted.set()
        if self.keep and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._keep(), name=f"lease-{self.id:x}")
        return self.id

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(max(0.5, self.ttl / 4))
            t0 = time.monotonic()
            try:
                ttl = await self.store.refresh_lease(self.id)
            except E.StoreError as e:
                log.debug("lease %x keep-alive failed: %s", self.id, e)
                continue
            if ttl <= 0:
                log.warning("lease %x expired", self.id)
                return
            self._confirmed = t0

    async def close(self, revoke: bool = True) -> None:
        if self._task:
            await cancel_and_wait([self._task])
            self._task = None
        if revoke and self.id:
            with contextlib.suppress(E.StoreError):
                await self.store.revoke_lease(self.id)
        self.id = 0
