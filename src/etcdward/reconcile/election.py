"""Leader election on an etcd lease: one key, created only if absent, bound to our lease.

Only voting members campaign (the reconciler starts after the local etcd passes a
linearizable read). A leader that cannot renew its lease stops leading before etcd could
have expired it (`KeptLease.valid`), and every write it makes is a CAS anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from ..lease import KeptLease
from ..store import Store
from ..store import errors as E

log = logging.getLogger(__name__)

KEY = "/etcdward/election/reconciler"


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

    async def campaign(self, poll: float = 0.5) -> None:
        """Return once this node holds the election key."""
        while True:
            try:
                if not self.lease.valid:
                    await self.lease.close(revoke=False)
                    await self.lease.grant()
                if await self.store.create(KEY, self.value, lease=self.lease.id):
                    self._won = True
                    log.info("%s is now the reconciler leader", self.name)
                    return
                kv = await self.store.get(KEY)
                if kv is not None and kv.lease == self.lease.id:
                    self._won = True
                    return
            except E.StoreError as e:
                log.debug("campaign: %s", e)
            await asyncio.sleep(poll)

    async def still_leader(self) -> bool:
        if not self.leading:
            return False
        try:
            kv = await self.store.get(KEY)
        except E.StoreError:
            return self.lease.valid
        self._won = kv is not None and kv.lease == self.lease.id
        return self._won

    async def resign(self) -> None:
        self._won = False
        with contextlib.suppress(E.StoreError):
            kv = await self.store.get(KEY)
            if kv is not None and kv.lease == self.lease.id:
                await self.store.delete_if(KEY, kv.mod_revision)
        await self.lease.close(revoke=True)


async def current_leader(store: Store) -> dict[str, str] | None:
    kv = await store.get(KEY)
    return json.loads(kv.value) if kv else None
