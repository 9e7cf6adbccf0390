"""Maintenance by the reconciler leader, in a task of its own beside the reconcile loop (it runs
while this controller leads and is cancelled with the leadership).

Every CHECK_EVERY seconds (with a log watch: when etcd wrote to its log, and at the latest when
an alarm re-check or an automatic defrag is due; pause()) it looks at the cluster's alarms: from its own etcd's Status (a local
answer: the Alarm RPC would be a raft proposal, written and fsynced on every member, each time),
asked only when the local etcd wrote to its log (etcd logs every alarm it applies: "alarm NOSPACE
raised by peer"; etcdlogwatch.py), at least every ALARM_RECHECK seconds, and at every check
while NOSPACE is raised:
- NOSPACE raised: compact to the current revision, defragment every live member (one at a
  time, the etcd leader last), disarm once every db is below 90 % of the quota, record it. Retried every
  NOSPACE_RETRY seconds while the alarm stays (e.g. until an operator has deleted data). The
  defrag window does not apply: the cluster takes no writes until this is done.
- otherwise, every AUTO_EVERY seconds and inside spec.maintenance.defrag.window: the members
  whose published figures say they need it (maintenance/plan.py), under the cluster-wide lock,
  one at a time, the etcd leader last, never while the cluster is unhealthy.

Each member's defrag it decides is counted in etcdward_defrag_operations_total (trigger auto or
nospace; also for members defragmented through their controllers, which leave these to it) and
each NOSPACE recovery in etcdward_nospace_recoveries_total. Its heartbeat ("maintenance", for
/livez) allows one member's defrag between two beats: it beats before each one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from ..errors import EtcdwardError
from ..heartbeats import ETCD_CALL, Heartbeat
from ..keys import DEFRAG_LOCK
from ..maintenance import plan
from ..maintenance.defrag import LEADER_MOVE_WAIT, DefragReport, DefragRefused, defrag_members, record, recover_nospace
from ..maintenance.figures import live_controllers
from ..maintenance.lock import DefragBusy, DefragLock
from ..maintenance.remote import DEFRAG_TIMEOUT, ControllerClient
from ..etcdlogwatch import EtcdLogWatch
from ..memberreport import alarms_in
from ..store import Store
from ..store import errors as E
from ..voterdeps import VoterDeps

log = logging.getLogger(__name__)

CHECK_EVERY = 2.0
ALARM_RECHECK = 60.0  # Status at least this often even when the etcd log did not move
NOSPACE_RETRY = 10.0
AUTO_EVERY = 60.0
ONE_DEFRAG = DEFRAG_TIMEOUT + LEADER_MOVE_WAIT + 4 * ETCD_CALL  # the longest one member's defrag may take


class Maintainer:
    def __init__(self, deps: VoterDeps, log_watch: EtcdLogWatch | None = None) -> None:
        self.store: Store = deps.store
        self.name = deps.ident.name
        self.data = deps.data
        self.spec = deps.cfg.spec.maintenance.defrag
        self.quota = deps.cfg.etcd.quota_bytes
        self.log_watch = log_watch  # None: Status at every check
        self.alarm_seen = -1  # the log watch's version at the last Status
        self.alarm_checked = -ALARM_RECHECK
        self.nospace = False
        self.last_nospace = -NOSPACE_RETRY
        self.last_auto = time.monotonic()  # a new leader first lets the cluster settle
        self.last_refusal = ""
        self._client: ControllerClient | None = None
        self.metrics = deps.metrics
        self.heartbeats = deps.heartbeats
        self.hb: Heartbeat | None = None

    def client(self) -> ControllerClient:
        if self._client is None:
            self._client = ControllerClient(self.data, f"etcdward-reconciler:{self.name}")
        return self._client

    def say_once(self, why: str) -> None:
        """A reason to wait, logged when it changes (not at every check)."""
        if why != self.last_refusal:
            log.info("maintenance: %s", why)
        self.last_refusal = why

    def next_defrag(self) -> None:
        """A member's defrag starts: it may take up to ONE_DEFRAG before the next beat."""
        if self.hb is not None:
            self.hb.beat(next_in=ONE_DEFRAG)

    def count(self, trigger: str, report: DefragReport | None, outcome: str = "success") -> None:
        self.metrics.defrags.labels(trigger, outcome).inc()
        if report is not None:
            self.metrics.defrag_duration.labels(trigger).observe(report.seconds)

    async def run(self) -> None:
        # a round's etcd calls before it says it defragments (alarms, lock or figures, members, status),
        # each counted twice: the store retries once
        with self.heartbeats.loop("maintenance", every=CHECK_EVERY, work=8 * ETCD_CALL) as self.hb:
            while True:
                try:
                    await self.check()
                except (E.StoreError, EtcdwardError) as e:
                    log.warning("maintenance: %s", e)
                await self.pause()

    async def pause(self) -> None:
        """Until the next check: CHECK_EVERY seconds, or, with a log watch and no NOSPACE, until
        etcd writes to its log (at least CHECK_EVERY after this check) or an alarm re-check or an
        automatic defrag is due: an idle etcd writes nothing, so an idle cluster costs no wake-up
        every CHECK_EVERY."""
        assert self.hb is not None
        logs = self.log_watch
        now = time.monotonic()
        if logs is None or self.nospace:
            self.hb.beat()
            await asyncio.sleep(CHECK_EVERY)
            return
        due = self.alarm_checked + ALARM_RECHECK
        if self.spec.auto:
            due = min(due, self.last_auto + AUTO_EVERY)
        wait = max(CHECK_EVERY, due - now)
        self.hb.beat(next_in=wait)
        await asyncio.sleep(CHECK_EVERY)
        await logs.moved_within(self.alarm_seen, wait - CHECK_EVERY)  # NOSPACE can wait etcdlogwatch.SETTLE

    async def check(self) -> None:
        now = time.monotonic()
        logs = self.log_watch
        seen = logs.version if logs is not None else -1
        if logs is None or self.nospace or seen != self.alarm_seen or now - self.alarm_checked >= ALARM_RECHECK:
            errors = (await self.store.status()).errors
            self.alarm_seen, self.alarm_checked = seen, now  # the version before the read: a line during it counts
            self.nospace = any(alarm == "NOSPACE" for _, alarm in alarms_in(errors))
        if self.nospace:
            if now - self.last_nospace >= NOSPACE_RETRY:
                self.last_nospace = now
                await self.recover()
            return
        if not self.spec.auto or now - self.last_auto < AUTO_EVERY:
            return
        self.last_auto = now
        if self.spec.allows(dt.datetime.now(dt.timezone.utc)):
            await self.auto_defrag()

    async def recover(self) -> None:
        if await self.store.get(DEFRAG_LOCK) is not None:
            self.say_once("NOSPACE raised; waiting for the running defrag to finish first")
            self.last_nospace = -NOSPACE_RETRY  # look again at the next check
            return
        self.last_refusal = ""
        log.warning("maintenance: NOSPACE alarm raised: compacting, defragmenting and disarming")

        def note(r: DefragReport | None) -> None:
            self.count("nospace", r, "success" if r else "failed")
            self.next_defrag()

        self.next_defrag()
        try:
            outcome = await recover_nospace(self.store, self.client(), self.quota, note=note)
        except (E.StoreError, EtcdwardError):
            self.metrics.nospace_recoveries.labels("failed").inc()
            raise
        self.metrics.nospace_recoveries.labels("recovered" if outcome.disarmed else "incomplete").inc()
        (log.info if outcome.disarmed else log.warning)("maintenance: %s", outcome.message)
        if outcome.disarmed:
            await record(self.store, "nospace-recovery", self.name, outcome.message, outcome.reports)

    async def auto_defrag(self) -> None:
        live = await live_controllers(self.store)
        status = await self.store.status()
        due = plan.candidates({mid: c.figures for mid, c in live.items()}, status.leader_id,
                              self.spec.fragmented_ratio, self.spec.min_fragmented_bytes)
        if not due:
            return
        done: list[DefragReport] = []

        def note(r: DefragReport) -> None:
            done.append(r)
            self.count("auto", r)
            self.next_defrag()
            log.info("maintenance: automatic %s", r.line())

        self.next_defrag()
        try:
            async with DefragLock(self.store, f"reconciler leader {self.name}"):
                await defrag_members(self.store, self.client(), only=due, note=note, trigger="auto")
        except (DefragRefused, DefragBusy) as e:
            self.count("auto", None, "refused")
            self.say_once(f"automatic defrag postponed: {e}")
        except (E.StoreError, EtcdwardError):
            self.count("auto", None, "failed")
            raise
        finally:
            if done:
                self.last_refusal = ""
                await record(self.store, "defrag", self.name,
                             f"automatic defrag of {', '.join(r.name for r in done)}", done)


async def run_maintenance(deps: VoterDeps, log_watch: EtcdLogWatch | None = None) -> None:
    await Maintainer(deps, log_watch).run()
