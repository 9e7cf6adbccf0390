"""Leases that say who leads and who is alive.

Election: one key, created only if absent, bound to this controller's liveness lease (one
lease per controller: a leader that is not live cannot lead, and renews one lease, not two).
Only voting members campaign (the reconciler starts after the local etcd passes a linearizable
read), and a controller whose own record asks it to leave does not (`eligible`). A leader whose
lease is not renewed stops leading before etcd could have expired it (`KeptLease.valid`), a new
lease (the old one expired) is a new campaign, and every write it makes is a CAS anyway.
Resigning deletes the key and keeps the lease (the liveness goes on).

Liveness: every controller keeps /etcdward/alive/<member id hex> bound to its own lease, renewed
through its local etcd only: a follower forwards the renewal to the etcd leader, and a leader
without quorum steps down within an election timeout (etcd runs raft with CheckQuorum), so a
renewal passes only while the local etcd answers and reaches a leader with quorum - what a
linearizable read proved before, without making the etcd leader confirm its leadership with
every member at every beat (/readyz still asks for one, when asked). Client ports listen on
127.0.0.1 only, so no controller can probe another member's etcd; a live key is how the
reconciler (and `etcd leave`) count "started, healthy voters" for the quorum guard. The key's
body also carries this member's figures from its own etcd's Status RPC (memberreport.py), which
`etcdward status` shows and the maintenance reads (db sizes for defrag), and its API URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import logging
import time
from collections.abc import Awaitable, Callable

from ..crashpoints import delay_point
from ..heartbeats import ETCD_CALL, Heartbeat, Heartbeats
from ..lease import KeptLease
from ..memberreport import DEFAULT_QUOTA, REPORT_EVERY, MemberReport, due, from_status
from ..store import Store
from ..store import errors as E

log = logging.getLogger(__name__)

from ..keys import ALIVE, RECONCILER_LEADER
from ..retry import retry

RECHECK = 30.0  # a follower tries the election key at least this often, even if no watch event came


class Election:
    """The election key lives and dies with `lease`, this controller's liveness lease
    (Liveness.kept, renewed by the liveness loop): a leader renews one lease, not two (each
    renewal is a round trip through etcd's leader), and whatever ends the liveness ends the
    leadership."""

    def __init__(self, store: Store, name: str, member_id: str, lease: KeptLease) -> None:
        self.store = store
        self.value = json.dumps({"name": name, "memberID": member_id})
        self.name = name
        self.lease = lease
        self._won_with = 0  # the lease the key was created with; 0: not leading

    @property
    def leading(self) -> bool:
        return self._won_with != 0 and self.lease.valid and self.lease.id == self._won_with

    async def campaign(self, poll: float = 0.5, eligible: Callable[[], Awaitable[bool]] | None = None,
                       recheck: float = RECHECK, beat: Callable[[], None] = lambda: None) -> None:
        """Return once this node holds the election key (only tried while `eligible()`);
        `beat()` every round (the reconciler's heartbeat: a round may wait up to `recheck`).

        While another controller holds the key, this one holds no lease and sends nothing: it
        watches the key and tries again when it is deleted (its holder resigned or its lease
        expired), or after `recheck` seconds at the latest."""
        while True:
            beat()
            try:
                if eligible is not None and not await eligible():
                    await asyncio.sleep(poll)
                    continue
                # a read first: a lease grant, a failed create and a revoke at every recheck would
                # be three raft writes on every member while another controller leads
                held = await self.store.get(RECONCILER_LEADER)
                if held is not None and (held.lease != self.lease.id or not self.lease.valid):
                    await self._until_deleted(held.mod_revision, recheck)
                    continue
                if not self.lease.valid:  # the liveness loop grants it (again): wait for that
                    await self.lease.until_valid(poll)
                    continue
                if await self.store.create(RECONCILER_LEADER, self.value, lease=self.lease.id):
                    self._won_with = self.lease.id
                    log.info("%s is now the reconciler leader", self.name)
                    return
                kv = await self.store.get(RECONCILER_LEADER)
                if kv is not None and kv.lease == self.lease.id:
                    self._won_with = self.lease.id
                    return
                if kv is not None:
                    await self._until_deleted(kv.mod_revision, recheck)
                    continue
            except E.StoreError as e:
                log.debug("campaign: %s", e)
            await asyncio.sleep(poll)

    async def _until_deleted(self, mod_revision: int, timeout: float) -> None:
        """Until the election key written at mod_revision is deleted (or replaced), or timeout."""
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: never swallows a cancel (tasks.py)
            async with asyncio.timeout(timeout):
                async with contextlib.aclosing(self.store.watch_prefix(RECONCILER_LEADER, mod_revision + 1)) as batches:
                    async for batch in batches:
                        if any(ev.key == RECONCILER_LEADER for ev in batch):
                            return

    async def still_leader(self) -> bool:
        if not self.leading:
            return False
        try:
            kv = await self.store.get(RECONCILER_LEADER)
        except E.StoreError:
            return self.lease.valid
        if kv is None or kv.lease != self.lease.id:
            self._won_with = 0
        return self.leading

    async def resign(self) -> None:
        """Delete the key (if still ours); the lease stays: it is the liveness's."""
        self._won_with = 0
        with contextlib.suppress(E.StoreError):
            kv = await self.store.get(RECONCILER_LEADER)
            if kv is not None and kv.lease == self.lease.id:
                await self.store.delete_if(RECONCILER_LEADER, kv.mod_revision)


class Liveness:
    """Keeps ALIVE/<member id> while the local etcd renews its lease, its body carrying this
    member's report (republished when due, memberreport.py)."""

    def __init__(self, store: Store, member_id: str, body: dict[str, str], ttl: int = 10,
                 quota: int = DEFAULT_QUOTA, clock: Callable[[], float] = time.time,
                 heartbeats: Heartbeats | None = None) -> None:
        self.store = store
        self.heartbeats = heartbeats or Heartbeats()
        self.hb: Heartbeat | None = None
        self.key = ALIVE + member_id
        self.body = body
        self.ttl = ttl
        self.quota = quota
        self.clock = clock
        self.kept = KeptLease(store, ttl, keep=False)  # renewed here; the election shares it
        self.published: MemberReport | None = None

    @property
    def lease(self) -> int:
        return self.kept.id

    async def run(self) -> None:
        period = max(0.5, self.ttl / 4)
        # a round: a lease renewal (and Status when a report may be due), or a new lease and the key
        self.hb = self.heartbeats.register("liveness", every=period, work=4 * ETCD_CALL)
        try:
            while True:
                # A failed beat is tried again every period until one passes; meanwhile the key
                # expires with its lease, which is the point: no renewal through the local etcd,
                # no liveness.
                await retry(self._beat, deadline=math.inf, backoff=(period,), jitter=0, what=f"liveness {self.key}",
                            retry_on=(E.StoreError,))
                await asyncio.sleep(period)
        finally:
            self.heartbeats.unregister(self.hb)
            await self.kept.close(revoke=True)

    async def _beat(self) -> None:
        assert self.hb is not None
        self.hb.beat()
        await delay_point("liveness-beat")  # tests: a stalled loop (/livez)
        if self.lease:
            sent_at = time.monotonic()
            left, term = await self.store.keep_alive(self.lease)
            if left > 0:
                self.kept.confirm(sent_at)
                report = await self._report() if self._may_be_due(term) else None
                if report is not None and due(self.published, report, self._every):
                    try:
                        await self._publish(report)
                    except E.StoreError as e:  # e.g. NOSPACE refuses puts: the liveness holds, the figures wait
                        log.debug("liveness %s: report not published (%s)", self.key, e)
                return
        await self.kept.grant()
        await self._publish(await self._report() or self.published)

    @property
    def _every(self) -> float:
        return max(REPORT_EVERY, self.ttl)

    def _may_be_due(self, term: int) -> bool:
        """Whether to read Status this beat: the raft term moved (a new etcd leader, which the
        report names), the report is old, or none was published. The other material figures
        (alarms, quota, version) wait for the next time-due report: Status is not asked every
        beat for them (the maintenance reads alarms from Status itself)."""
        last = self.published
        return last is None or term != last.raft_term or self.clock() - last.reported_at >= self._every

    async def _report(self) -> MemberReport | None:
        try:
            return from_status(await self.store.status(timeout=2.0), self.quota, self.clock())
        except E.StoreError as e:  # the liveness itself does not depend on the figures
            log.debug("liveness %s: no status for the report (%s)", self.key, e)
            return None

    async def _publish(self, report: MemberReport | None) -> None:
        body = {**self.body, "report": report.to_dict() if report else None}
        await self.store.put(self.key, json.dumps(body), lease=self.lease)
        self.published = report
