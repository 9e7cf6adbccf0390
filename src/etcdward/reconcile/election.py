"""Leases that say who leads and who is alive.

Election: one key, created only if absent, bound to our lease. Only voting members campaign
(the reconciler starts after the local etcd passes a linearizable read), and a controller whose
own record asks it to leave does not (`eligible`). A leader that cannot renew its lease stops
leading before etcd could have expired it (`KeptLease.valid`), and every write it makes is a
CAS anyway.

Liveness: every controller keeps /etcdward/alive/<member id hex> bound to its own lease, and
renews the lease only after its local etcd passed a linearizable read. Client ports listen on
127.0.0.1 only, so no controller can probe another member's etcd; a live key is how the
reconciler (and `etcd leave`) count "started, healthy voters" for the quorum guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import logging
from collections.abc import Awaitable, Callable

from ..lease import KeptLease
from ..store import Store
from ..store import errors as E

log = logging.getLogger(__name__)

from ..keys import ALIVE, RECONCILER_LEADER
from ..retry import retry

RECHECK = 30.0  # a follower tries the election key at least this often, even if no watch event came


class Election:
    def __init__(self, store: Store, name: str, member_id: str, ttl: int = 10) -> None:
        self.store = store
        self.value = json.dumps({"name": name, "memberID": member_id})
        self.name = name
        self.lease = KeptLease(store, ttl)

    @property
    def leading(self) -> bool:
        return self.lease.valid and self._won

    _won = False

    async def campaign(self, poll: float = 0.5, eligible: Callable[[], Awaitable[bool]] | None = None,
                       recheck: float = RECHECK) -> None:
        """Return once this node holds the election key (only tried while `eligible()`).

        While another controller holds the key, this one holds no lease and sends nothing: it
        watches the key and tries again when it is deleted (its holder resigned or its lease
        expired), or after `recheck` seconds at the latest."""
        while True:
            try:
                if eligible is not None and not await eligible():
                    await asyncio.sleep(poll)
                    continue
                if not self.lease.valid:
                    await self.lease.close(revoke=False)
                    await self.lease.grant()
                if await self.store.create(RECONCILER_LEADER, self.value, lease=self.lease.id):
                    self._won = True
                    log.info("%s is now the reconciler leader", self.name)
                    return
                kv = await self.store.get(RECONCILER_LEADER)
                if kv is not None and kv.lease == self.lease.id:
                    self._won = True
                    return
                if kv is not None:
                    await self.lease.close(revoke=True)  # a follower keeps no lease alive
                    await self._until_deleted(kv.mod_revision, recheck)
                    continue
            except E.StoreError as e:
                log.debug("campaign: %s", e)
            await asyncio.sleep(poll)

    async def _until_deleted(self, mod_revision: int, timeout: float) -> None:
        """Until the election key written at mod_revision is deleted (or replaced), or timeout."""
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: never swallows a cancel (tasks.py)
            async with asyncio.timeout(timeout):
                async for batch in self.store.watch_prefix(RECONCILER_LEADER, mod_revision + 1):
                    if any(ev.key == RECONCILER_LEADER for ev in batch):
                        return

    async def still_leader(self) -> bool:
        if not self.leading:
            return False
        try:
            kv = await self.store.get(RECONCILER_LEADER)
        except E.StoreError:
            return self.lease.valid
        self._won = kv is not None and kv.lease == self.lease.id
        return self._won

    async def resign(self) -> None:
        self._won = False
        with contextlib.suppress(E.StoreError):
            kv = await self.store.get(RECONCILER_LEADER)
            if kv is not None and kv.lease == self.lease.id:
                await self.store.delete_if(RECONCILER_LEADER, kv.mod_revision)
        await self.lease.close(revoke=True)


class Liveness:
    """Keeps ALIVE/<member id> while the local etcd answers linearizable reads."""

    def __init__(self, store: Store, member_id: str, body: dict[str, str], ttl: int = 10) -> None:
        self.store = store
        self.key = ALIVE + member_id
        self.body = json.dumps(body)
        self.ttl = ttl
        self.lease = 0

    async def run(self) -> None:
        period = max(0.5, self.ttl / 4)
        try:
            while True:
                # A failed beat is tried again every period until one passes; meanwhile the key
                # expires with its lease, which is the point: no linearizable read, no liveness.
                await retry(self._beat, deadline=math.inf, backoff=(period,), jitter=0, what=f"liveness {self.key}",
                            retry_on=(E.StoreError,))
                await asyncio.sleep(period)
        finally:
            if self.lease:
                with contextlib.suppress(E.StoreError):
                    await self.store.revoke_lease(self.lease)

    async def _beat(self) -> None:
        await self.store.ready()  # no linearizable read, no renewal: the key expires with the lease
        if self.lease and await self.store.refresh_lease(self.lease) > 0:
            return
        self.lease = await self.store.grant_lease(self.ttl)
        await self.store.put(self.key, self.body, lease=self.lease)
