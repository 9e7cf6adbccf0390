"""One defrag at a time, cluster-wide: a key bound to its holder's lease.

The holder keeps the lease alive while it works; if it dies, etcd deletes the key within the
lease's TTL. Under NOSPACE no lease can be granted and no key written, so nobody can take the
lock: the reconciler leader's NOSPACE recovery then runs without it, after waiting for a lock
taken before the alarm to go away (reconcile/maintain.py).
"""

from __future__ import annotations

import json
import time
from types import TracebackType

from ..errors import Permanent, Temporary
from ..keys import DEFRAG_LOCK
from ..lease import KeptLease
from ..store import Store
from ..store import errors as E

LOCK_TTL = 15  # seconds a dead holder keeps the lock


class DefragBusy(Temporary):
    """Another defrag holds the lock."""


class DefragLockUnavailable(Permanent):
    """The lock cannot be taken now (etcd refuses writes)."""


async def holder(store: Store) -> str | None:
    """Who holds the lock and since when, or None."""
    kv = await store.get(DEFRAG_LOCK)
    if kv is None:
        return None
    try:
        body = json.loads(kv.value)
        return f"{body['holder']}, for {time.time() - float(body['since']):.0f}s"
    except (ValueError, KeyError, TypeError):
        return "unknown holder"


class DefragLock:
    """async with DefragLock(store, "etcd defrag on n1"): ... — DefragBusy if taken."""

    def __init__(self, store: Store, who: str) -> None:
        self.store, self.who = store, who
        self.lease = KeptLease(store, LOCK_TTL)

    async def __aenter__(self) -> DefragLock:
        try:
            await self.lease.grant()
            body = json.dumps({"holder": self.who, "since": time.time()})
            taken = await self.store.create(DEFRAG_LOCK, body, lease=self.lease.id)
        except E.NoSpace:
            await self.lease.close()
            if (held := await holder(self.store)) is not None:
                raise DefragBusy(f"another defrag is running ({held}); only one runs at a time") from None
            raise DefragLockUnavailable(
                "cannot take the defrag lock: etcd is out of space (NOSPACE alarm; writes are refused); the "
                "reconciler leader compacts, defragments and disarms by itself once space can be freed "
                "(see `etcdward etcd alarm list`)") from None
        except BaseException:
            await self.lease.close()
            raise
        if not taken:
            await self.lease.close()
            raise DefragBusy(f"another defrag is running ({await holder(self.store) or 'just finished'}); "
                             "only one runs at a time")
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.lease.close(revoke=True)  # revoking deletes the key
