"""The leader-elected reconcile loop: wake -> snapshot -> decide -> apply one action -> log.

It wakes on one watch of etcdward's keys (records, join records, liveness keys appearing or
expiring, the election key), on a change of the member list (the process's MemberListReader,
read every 0.25 s while this loop leads: etcd has no watch for membership, so an `etcdctl
member remove` behind our back shows within ~0.25 s), and on a timer: fast (0.1 s; 0.05 s for a
started learner's first seconds) while a learner is pending or a leave is in progress (learner
timeouts, handovers), otherwise only as a safety net (SLOW): every change an idle cluster can see
is watched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from .. import records
from ..frozen import replace
from ..heartbeats import ETCD_CALL, Heartbeat, Heartbeats
from ..lease import KeptLease
from ..keys import ALIVE, ETCDMEMBERS, JOINS, RECONCILER_LEADER, ROOT, JoinRecord, join_key, member_id_of
from ..memberlist import MemberListReader
from ..memberops import MemberAction, MemberOps, Operation
from ..metrics import Metrics
from ..store import Store, WatchEvent
from ..store import errors as E
from ..etcdversions import skew
from ..membership import alive_members, alive_versions
from ..tasks import cancel_and_wait
from ..voterdeps import VoterDeps
from . import rules
from .election import RECHECK, Election


log = logging.getLogger(__name__)

# While a learner is pending or a pass waits on something in progress (a leave's handover, etcd).
PENDING = 0.1
# For the first seconds of a started learner: promoted on the first pass after it caught up, as
# often as an `etcdctl member promote` loop tries. Not longer (a learner catching up a large db)
# and not while its etcd boots: the passes, a handful of etcd calls each, load its cluster.
FAST = 0.05
FAST_FOR = 3.0
SLOW = 60.0  # a full pass at least this often (a safety net: every change it acts on is watched or cued)
SKEW_CHECK = 10.0  # the members' etcd versions (liveness keys) this often
# The longest a pass may take with nothing wrong in the controller: its snapshots and actions are
# a dozen etcd calls, and a removal may wait for its backup (the loop's /livez bound).
PASS_WORK = 12 * ETCD_CALL
# The actions that are membership operations: memberops logs their one line, not log_decision.
MEMBERSHIP_KINDS = frozenset({rules.Kind.PROMOTE, rules.Kind.REMOVE_STALLED_LEARNER, rules.Kind.REMOVE_MEMBER})


@dataclass(frozen=True)
class PassResult:
    """One pass: its decision line, the snapshot it read, the action it applied (None: none),
    and whether it waits on something in progress (the loop then polls fast)."""
    message: str
    snapshot: rules.Snapshot | None
    done: rules.Action | None
    waiting: bool = False


class Reconciler:
    def __init__(self, store: Store, learner_timeout: float = 300.0, self_id: int = 0,
                 handover_timeout: float = 5.0, joiner_timeout: float = 60.0, ops: MemberOps | None = None,
                 metrics: Metrics | None = None, heartbeats: Heartbeats | None = None) -> None:
        self.store = store
        self.ops = ops or MemberOps()
        self.metrics = metrics
        self.heartbeats = heartbeats or Heartbeats()
        self.names: dict[int, str] = {}  # member id -> name, from the last snapshot (for memberops)
        self.learner_timeout = learner_timeout
        self.joiner_timeout = joiner_timeout
        self.self_id = self_id
        self.handover_timeout = handover_timeout
        self.first_seen: dict[int, float] = {}
        # unstarted learner -> (mod revision of its join record, monotonic time we saw it change)
        self.heard: dict[int, tuple[int, float]] = {}
        self.handover_since: dict[str, float] = {}
        self.wakeup = asyncio.Event()
        self.last_message = ""
        self.leading: Callable[[], bool] | None = None  # set while leading: is the lease still ours?
        self.max_pass_age = 5.0
        # spec.backup: runs beside the loop while leading (scheduled backups); awaited before a
        # member removal (beforeMembershipChange), True when it waited for a backup
        self.while_leading: Callable[[], Awaitable[None]] | None = None
        self.before_removal: Callable[[str], Awaitable[bool]] | None = None
        self.skew_checked = -SKEW_CHECK
        self.started_learner_since: float | None = None  # monotonic: when a started learner was first seen
        self.skew = ""

    def _promotion_near(self, started_learner: bool) -> bool:
        """A started learner has been pending for less than FAST_FOR seconds."""
        now = time.monotonic()
        self.started_learner_since = (self.started_learner_since or now) if started_learner else None
        return started_learner and now - (self.started_learner_since or now) < FAST_FOR

    async def snapshot(self) -> rules.Snapshot:
        members = await self.store.members()
        status = await self.store.status()
        listing = await records.list_records(self.store)
        # Only the quorum guard reads `alive` (a started learner's promotion, a leave), and it
        # counts a member only if its lease was renewed lately: one LeaseTimeToLive per live key,
        # asked only when the guard will be evaluated: not on every safety-net pass of an idle
        # cluster, nor on the quick passes while a new learner's etcd boots beside them.
        guarded = any(m.is_learner and m.started for m in members) or any(r.leave for r in listing.records)
        alive = await alive_members(self.store, fresh=guarded)
        kvs, _ = await self.store.get_prefix(JOINS)
        joins = {}
        record_revs = {}
        for kv in kvs:
            mid = member_id_of(kv.key, JOINS)
            if mid is None:
                continue
            record_revs[mid] = kv.mod_revision  # "heard" even if the body is not what we expect
            if (record := JoinRecord.parse(kv.value)) is not None:
                joins[mid] = record
        now = time.time()
        live = {m.id for m in members if m.is_learner and not m.started}
        self.first_seen = {mid: self.first_seen.get(mid, now) for mid in live}
        last_heard = self._last_heard(live, record_revs, now)
        snap = rules.Snapshot(
            members=tuple(members), joins=joins, now=now, learner_timeout=self.learner_timeout,
            first_seen=dict(self.first_seen), last_heard=last_heard, joiner_timeout=self.joiner_timeout,
            records=listing.records, invalid_records=listing.invalid,
            alive=alive, leader_id=status.leader_id, self_id=self.self_id or status.member_id,
            handover_timeout=self.handover_timeout)
        self.names = {m.id: snap.name_of(m) for m in members}
        waiting = rules.leave_waiting_on_handover(snap)
        self.handover_since = {n: self.handover_since.get(n, now) for n in waiting}
        return replace(snap, handover_since=dict(self.handover_since))

    def _last_heard(self, unstarted: set[int], record_revs: dict[int, int], now: float) -> dict[int, float]:
        """When each unstarted learner's joiner was last heard from, as times on `now`'s scale.

        The serving controller rewrites the learner's join record on every repeated join
        request, so a new mod revision means "heard". Only this process's monotonic clock
        measures the silence: no wall clock written by another host is compared. A new leader
        (after a failover) counts from when it first saw the learner."""
        mono = time.monotonic()
        heard = {}
        for mid in unstarted:
            rev = record_revs.get(mid, 0)
            prev = self.heard.get(mid)
            heard[mid] = prev if prev is not None and prev[0] == rev else (rev, mono)
        self.heard = heard
        return {mid: now - (mono - seen) for mid, (_, seen) in heard.items()}

    async def apply(self, a: rules.Action) -> str | None:
        """None if applied; else why not yet (the next pass decides again from a fresh snapshot).
        Whatever etcd refuses for now (Temporary) waits for the next pass; an action somebody
        else already did counts as done."""
        try:
            return await self.HANDLERS[a.kind](self, a)
        except E.Temporary as e:
            return f"etcd refused it for now ({e})"
        except (E.MemberNotLearner, E.MemberNotFound):
            return None

    def _operation(self, action: MemberAction, a: rules.Action) -> AbstractAsyncContextManager[Operation]:
        name = a.record.name if a.record is not None else self.names.get(a.member_id, "(unknown)")
        return self.ops.run(log, action, name, a.member_id, f"reconcile: {a.message}", "reconcile: ")

    async def _promote(self, a: rules.Action) -> str | None:
        async with self._operation(MemberAction.PROMOTE, a):
            await self.store.promote(a.member_id)
        return None

    async def _remove_stalled_learner(self, a: rules.Action) -> str | None:
        async with self._operation(MemberAction.REMOVE, a):
            await self.store.remove_member(a.member_id)
        await self.store.delete(join_key(a.member_id))
        return None

    async def _forget_join(self, a: rules.Action) -> str | None:
        await self.store.delete(join_key(a.member_id))
        return None

    async def _delete_duplicate(self, a: rules.Action) -> str | None:
        assert a.record is not None
        if not await records.delete(self.store, a.record):
            return f"record {a.record.name} changed while deleting it"
        return None

    async def _write_record(self, a: rules.Action) -> str | None:
        assert a.record is not None
        r = a.record
        ok = await (records.update(self.store, r) if r.resource_version else records.create(self.store, r))
        # a resign's status write is best effort: the role is handed over either way
        return None if ok or a.kind is rules.Kind.RESIGN else f"record {r.name} changed concurrently"

    async def _remove_member(self, a: rules.Action) -> str | None:
        assert a.record is not None
        with contextlib.suppress(E.MemberNotFound):
            async with self._operation(MemberAction.REMOVE, a):
                await self.store.remove_member(a.member_id)
        await mark_removed(self.store, a.record.name, a.record.member_id)
        return None

    HANDLERS: dict[rules.Kind, Callable[[Reconciler, rules.Action], Awaitable[str | None]]] = {
        rules.Kind.PROMOTE: _promote,
        rules.Kind.REMOVE_STALLED_LEARNER: _remove_stalled_learner,
        rules.Kind.FORGET_JOIN: _forget_join,
        rules.Kind.DELETE_DUPLICATE: _delete_duplicate,
        rules.Kind.WRITE_RECORD: _write_record,
        rules.Kind.RESIGN: _write_record,
        rules.Kind.REMOVE_MEMBER: _remove_member,
    }

    async def run_pass(self) -> PassResult:
        started = time.monotonic()
        snap = await self.snapshot()
        actions = rules.decide(snap)
        removal = next((a for a in actions if a.kind in rules.REMOVALS), None)
        if removal is not None and self.before_removal is not None and await self.before_removal(
                f"removal of member {removal.member_id:x}"):
            # the backup took a while: decide again from a fresh snapshot (may_act's age check)
            started = time.monotonic()
            snap = await self.snapshot()
            actions = rules.decide(snap)
        if not actions:
            idle = rules.idle(snap)
            return PassResult(idle.message, snap, None, waiting=idle.waiting)
        first_refusal = ""
        # The first action etcd accepts is this pass's decision: one that etcd refuses for now
        # (a learner still catching up) must not hold back a leave or a duplicate behind it.
        for a in actions:
            if not self.may_act(started):
                return PassResult("waiting: leadership not confirmed; dropped this pass", snap, None, waiting=True)
            why = await self.apply(a)
            if why is None:
                return PassResult(a.message, snap, a)
            if not first_refusal:
                # not the action's own line (tests and operators grep for those), but what it waits for
                first_refusal = f"waiting: {a.kind} {a.message.split(' ', 1)[1]}: not done yet, {why}"
        return PassResult(first_refusal, snap, None, waiting=True)

    def may_act(self, pass_started: float) -> bool:
        """Membership changes are not CAS writes: act only while leadership is confirmed and the
        snapshot is younger than the lease margin (a paused leader must not act on old data)."""
        if self.leading is None:
            return True
        return self.leading() and time.monotonic() - pass_started < self.max_pass_age

    def log_decision(self, result: PassResult) -> None:
        # A pass that did nothing repeats its line every pass: log it only when it changes. A
        # membership operation's line was logged by memberops, with its structured fields.
        by_memberops = result.done is not None and result.done.kind in MEMBERSHIP_KINDS
        if not by_memberops and (result.done is not None or result.message != self.last_message):
            log.info("reconcile: %s", result.message)
        self.last_message = result.message

    def count(self, result: PassResult, failed: bool = False) -> None:
        if self.metrics is None:
            return
        outcome = "error" if failed else "acted" if result.done else "waiting" if result.waiting else "idle"
        self.metrics.reconcile_passes.labels(outcome).inc()
        if result.done is not None:
            self.metrics.reconcile_decisions.labels(result.done.kind).inc()
        if result.snapshot is not None:
            self.metrics.records_out_of_sync.set(len(rules.records_out_of_sync(result.snapshot)))

    async def warn_version_skew(self) -> None:
        """Warn (once per change) when members' etcd versions differ by more than one minor."""
        if time.monotonic() - self.skew_checked < SKEW_CHECK:
            return
        self.skew_checked = time.monotonic()
        try:
            warning = skew(await alive_versions(self.store)) or ""
        except E.StoreError:
            return
        if warning and warning != self.skew:
            log.warning("reconcile: %s", warning)
        self.skew = warning

    async def _follow_keys(self) -> None:
        """Wake the loop on a change of a key a pass reads (see wakes_reconciler)."""
        async for batch in self.store.follow_prefix(ROOT):
            if not batch or any(wakes_reconciler(ev) for ev in batch):
                self.wakeup.set()

    async def _follow_members(self, members: MemberListReader) -> None:
        with members.quick():
            await members.notify(self.wakeup)

    async def lead(self, election: Election, members: MemberListReader, hb: Heartbeat) -> str:
        """Reconcile while leading; returns "lost", or "resigned" when this controller must hand the
        role over (the caller resigns the election). (The watches wait for changes,
        which may never come: they have no heartbeat; the member-list reader has its own.)"""
        watchers = [asyncio.create_task(self._follow_keys(), name="keys-watch"),
                    asyncio.create_task(self._follow_members(members), name="member-list-changes")]
        if self.while_leading is not None:
            watchers.append(asyncio.create_task(self.while_leading(), name="while-leading"))
        self.leading = lambda: election.leading
        self.max_pass_age = max(1.0, election.lease.ttl * 0.5)
        try:
            while await election.still_leader():
                hb.beat()
                failed = False
                # cleared before the pass reads, not after: a change seen during the pass wakes the next one
                self.wakeup.clear()
                try:
                    result = await self.run_pass()
                except E.StoreError as e:
                    result, failed = PassResult(f"waiting: etcd unavailable ({e})", None, None, waiting=True), True
                self.log_decision(result)
                self.count(result, failed)
                await self.warn_version_skew()
                if result.done is not None and result.done.kind is rules.Kind.RESIGN:
                    return "resigned"  # the caller says so, then resigns (see run_reconciler)
                learners = [m for m in result.snapshot.members if m.is_learner] if result.snapshot else []
                fast = self._promotion_near(any(m.started for m in learners))
                delay = (0 if result.done is not None else FAST if fast
                         else PENDING if learners or result.waiting else SLOW)
                await self._wait(delay, election)
            return "lost"
        finally:
            if self.metrics is not None:
                self.metrics.records_out_of_sync.set(0)  # only the leader's view counts
            await cancel_and_wait(watchers)


    async def _wait(self, delay: float, election: Election) -> None:
        """Until woken or `delay` passed. A leader whose lease lapses (cut off) notices at once,
        not at the next safety-net pass: the wait looks at the lease when it could have lapsed,
        and goes on waiting (no pass) while the lease was renewed meanwhile."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0 and election.lease.valid:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), min(left, election.lease.valid_for() + 0.05))
                return


def wakes_reconciler(ev: WatchEvent) -> bool:
    """Whether a change under ROOT can change a pass's decision: records, join records, the
    election key, and liveness keys appearing or expiring (not a rewrite of a live one's body)."""
    if ev.key.startswith((ETCDMEMBERS, JOINS)) or ev.key == RECONCILER_LEADER:
        return True
    if ev.key.startswith(ALIVE):
        return ev.kind == "delete" or ev.create_revision == ev.mod_revision
    return False


async def mark_removed(store: Store, name: str, member_hex: str) -> None:
    """The record of a member removed on request ends Joined=False, Success."""

    def change(r: records.EtcdMember) -> records.EtcdMember | None:
        if r.member_id != member_hex:
            return None
        return r.with_status(reconcile_status="Success", message=records.MSG_REMOVED).with_joined(
            "False", records.MSG_REMOVED)

    with contextlib.suppress(records.NotFound, records.RecordError, records.RecordConflict):
        await records.modify(store, name, change)


async def run_reconciler(deps: VoterDeps, members: MemberListReader, lease: KeptLease,
                         while_leading: Callable[[], Awaitable[None]] | None = None,
                         before_removal: Callable[[str], Awaitable[bool]] | None = None) -> None:
    """lease: the liveness lease, which the election key shares (Election)."""
    store, name, my_id = deps.store, deps.ident.name, deps.ident.member_id or ""
    spec = deps.cfg.spec.reconciler
    rec = Reconciler(store, learner_timeout=spec.learner_start_timeout, self_id=deps.member_id,
                     joiner_timeout=spec.joiner_timeout, ops=MemberOps(deps.metrics), metrics=deps.metrics,
                     heartbeats=deps.heartbeats)
    rec.while_leading, rec.before_removal = while_leading, before_removal
    election = Election(store, name, my_id, lease)

    async def eligible() -> bool:
        """A controller whose own record asks it to leave does not lead (it would have to
        remove itself) while another healthy voter that is not leaving can."""
        try:
            r = await records.get(store, name)
            if not (r is not None and r.leave and r.member_id == my_id):
                return True
            listing = await records.list_records(store)
            others = rules.successors(await store.members(), listing.records, await alive_members(store),
                                      rec.self_id)
        except (E.StoreError, records.RecordError):
            return True
        return not others

    leader = deps.metrics.reconciler_leader
    try:
        # a round waits up to SLOW for a change while leading, up to the election's RECHECK while not
        with deps.heartbeats.loop("reconciler", every=max(SLOW, RECHECK), work=PASS_WORK) as hb:
            while True:
                await election.campaign(eligible=eligible, beat=hb.beat)
                leader.set(1)
                try:
                    why = await rec.lead(election, members, hb)
                finally:
                    leader.set(0)
                if why == "resigned":
                    # said before the key goes: the next leader removes this member at once, and
                    # this controller may be stopping (its etcd removed) before a revoke returns
                    log.info("%s resigned the reconciler leadership (it is leaving the cluster)", name)
                    await election.resign()
                else:
                    log.warning("%s lost the reconciler leadership", name)
    finally:
        await election.resign()
