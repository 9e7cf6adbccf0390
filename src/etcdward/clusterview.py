"""The cluster as one node sees it, for `etcdward status`: read (`gather`), judged (`verdict`,
pure), and shaped for output (`to_dict`). Also this node's own certificates (read from its
pki/, judged by certexpiry.expiry_problems) and the maintenance keys: the last record
(/etcdward/maintenance/last) and a defrag running now (its lock key).

Everything comes from this node's own etcd: client ports listen on loopback only, so the
other members' figures are the reports their controllers publish with their liveness keys
(memberreport.py), and a learner's progress is what its joiner sent with its repeated join
request (keys.JoinRecord). Each read may fail on its own (no quorum: linearizable reads time
out, the local Status still answers); a failed read is a reason in the verdict, never a crash.
"""

from __future__ import annotations

import json
import time
import datetime as dt
from pathlib import Path

from .frozen import field, frozen, replace
from .keys import ALIVE, DEFRAG_LOCK, JOINS, MAINTENANCE_LAST, RECONCILER_LEADER, JoinRecord, member_id_of
from .memberreport import DEFAULT_QUOTA, REPORT_EVERY, MemberReport, alarms_in, from_status

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints

if TYPE_CHECKING:
    from typing import Any

    from .certexpiry import CertExpiry
    from .paths import DataDir
    from .store import Member, Status, Store

STALE_AFTER = 3 * REPORT_EVERY  # a report older than this: its controller is not reporting
STUCK_REPEATS = 6  # join repeats (~5 s apart) without progress before a learner counts as stuck
READ_TIMEOUT = 3.0


@frozen
class MemberView:
    member: Member
    alive: bool  # its controller's liveness key is live (renewed only after a linearizable read)
    report: MemberReport | None = None  # its figures: as its controller published them last (this node: fresh)
    reported_at: float | None = None  # when its controller last published (its host's clock)
    etcd_version: str = ""  # from the liveness key (also without a report: an older controller)
    join: JoinRecord | None = None  # a learner's join record: its progress
    alarms: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.member.name or (self.join.node if self.join else "") or "(unstarted)"

    @property
    def role(self) -> str:
        return "learner" if self.member.is_learner else "voter"


@frozen
class ClusterView:
    now: float
    local: Status
    members: tuple[MemberView, ...] = ()
    reconciler_leader: str | None = None
    record_drift: tuple[tuple[str, str], ...] = ()
    records: int = 0
    ready_error: str | None = None  # this node's etcd fails a linearizable read: why
    read_errors: tuple[tuple[str, str], ...] = ()  # (what, why) of the reads that failed
    backup: dict[str, Any] = field(default_factory=dict)
    maintenance_last: dict[str, Any] | None = None  # the record, as the last maintenance wrote it
    defrag_running: dict[str, Any] | None = None  # the lock's body: holder, since (unix seconds)
    certificates: tuple[CertExpiry, ...] = ()  # this node's (gather with its data dir)
    data_root: str = ""  # this node's data dir: certificate paths are shown relative to it

    def name_of(self, member_id: int) -> str:
        m = next((v for v in self.members if v.member.id == member_id), None)
        return m.name if m else format(member_id, "x")

    def report_age(self, v: MemberView) -> float | None:
        """Seconds since v's controller last reported (a learner: since its joiner last asked)."""
        at = v.reported_at if v.reported_at is not None else v.join.heard_at if v.join else None
        return None if at is None else max(0.0, self.now - at)


def verdict(view: ClusterView) -> list[str]:
    """Why the control plane is degraded; [] when it is healthy. Pure."""
    reasons: list[str] = []
    if view.ready_error:
        reasons.append(f"this node's etcd fails a linearizable read: {view.ready_error}")
        if view.read_errors:  # the same cause: name them once
            reasons.append("could not read " + ", ".join(what for what, _ in view.read_errors))
    else:
        reasons.extend(f"could not read {what}: {why}" for what, why in view.read_errors)
    if view.local.leader_id == 0:
        reasons.append("etcd has no leader (as this node's member sees it)")
    if view.reconciler_leader is None and not view.read_errors:
        reasons.append("no reconciler leader (no controller holds the election key)")
    # NOSPACE refuses every put, the controllers' reports included: their age says nothing then
    puts_refused = any("NOSPACE" in v.alarms for v in view.members)
    for v in view.members:
        who = f"member {v.name} (id {v.member.hex_id})"
        reasons.extend(f"alarm {a} on {who}" for a in v.alarms)
        if v.member.is_learner:
            j = v.join
            if j is not None and j.stalled >= STUCK_REPEATS and (j.progress or 0) < 100:
                reasons.append(f"learner {v.name} (id {v.member.hex_id}) is stuck at {j.progress or 0:.0f}%: its "
                               f"applied index has not moved over its joiner's last {j.stalled} repeats")
            continue
        if not v.member.started:
            continue  # added, its etcd not started yet: the join is under way (the reconciler times it out)
        if not v.alive:
            reasons.append(f"{who} is not reporting: its controller's liveness key expired (the controller "
                           "stopped, or its etcd cannot reach a leader with quorum)")
            continue
        age = view.report_age(v)
        if age is not None and age > STALE_AFTER and not puts_refused:
            reasons.append(f"{who} is not reporting: its last report is {age:.0f}s old")
        r = v.report
        if r is not None and r.near_quota:
            reasons.append(f"{who}: db {human_bytes(r.db_size)} is {100 * r.db_size / r.db_quota:.0f}% of its "
                           f"quota {human_bytes(r.db_quota)} (compact and defragment, or raise "
                           "spec.storage.etcd.quotaBackendBytes)")
    if view.record_drift:
        reasons.append("records out of sync with the member list: "
                       + ", ".join(f"{name} ({why})" for name, why in view.record_drift))
    if view.certificates:
        from .certexpiry import expiry_problems

        reasons.extend(f"this node's {p}" for p in expiry_problems(list(view.certificates), _utc(view.now),
                                                                   Path(view.data_root)))
    return reasons


def _utc(unix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- reading -----------------------------------------------------------------------------------

async def gather(store: Store, now: float | None = None, data: DataDir | None = None) -> ClusterView:
    """Read the view from this node's etcd (and with `data`, its certificates from its pki/).
    Raises store errors only when the local etcd does not answer its Status RPC at all (the
    caller's "cannot reach its etcd")."""
    import asyncio  # here: the CLI's fast path reads through the gateway and builds the view itself

    from .backup.report import read_status
    from .records import list_records
    from .store import errors as E

    local = await store.status(timeout=READ_TIMEOUT)
    errors: list[tuple[str, str]] = []

    async def attempt(what: str, coro: Any, default: Any) -> Any:
        try:
            return await coro
        except E.StoreError as e:
            errors.append((what, str(e)))
            return default

    async def ready() -> str | None:
        try:
            await store.ready(timeout=READ_TIMEOUT)
            return None
        except E.StoreError as e:
            return str(e)

    async def maintenance() -> tuple[Any, Any]:
        return await asyncio.gather(store.get(MAINTENANCE_LAST), store.get(DEFRAG_LOCK))

    members, alive, joins, leader, listing, backup, alarms, ready_error, (last, lock) = await asyncio.gather(
        attempt("the member list", store.members(timeout=READ_TIMEOUT), None),
        attempt("the liveness keys", store.get_prefix(ALIVE), ([], 0)),
        attempt("the join records", store.get_prefix(JOINS), ([], 0)),
        attempt("the reconciler leader", store.get(RECONCILER_LEADER), None),
        attempt("the EtcdMember records", list_records(store), None),
        attempt("the backup status", read_status(store), {"lastSuccess": None, "lastFailure": None}),
        _alarms(store), ready(), attempt("the maintenance keys", maintenance(), (None, None)))
    if alarms is None:  # the Alarm RPC needs quorum; Status lists the same alarms locally
        alarms = alarms_in(local.errors)
    if members is None and local.is_learner:
        errors.append(("the cluster", "this node's etcd is a learner, which serves no member list; run "
                       "`etcdward status` on a voting member"))
    view = build(local, members or [], alive[0], joins[0], leader, listing, backup, alarms,
                 time.time() if now is None else now, ready_error, errors)
    return finish(view, last, lock, data)


def finish(view: ClusterView, last: Any, lock: Any, data: DataDir | None) -> ClusterView:
    """The view with the maintenance keys (KVs or None) and, with `data`, this node's certificates."""
    from .certexpiry import node_certificates

    return replace(view, maintenance_last=_json(last.value) if last else None,
                   defrag_running=_json(lock.value) if lock else None,
                   certificates=tuple(node_certificates(data)) if data is not None else (),
                   data_root=str(data.root) if data else "")


async def _alarms(store: Store) -> list[tuple[int, str]] | None:
    from .store import errors as E

    try:
        return [(a.member_id, a.kind) for a in await store.alarms(timeout=READ_TIMEOUT)]
    except E.StoreError:
        return None


def build(local: Status, members: list[Member], alive_kvs: list[Any], join_kvs: list[Any], leader_kv: Any,
          listing: Any, backup: dict[str, Any], alarms: list[tuple[int, str]], now: float,
          ready_error: str | None = None, errors: list[tuple[str, str]] | None = None) -> ClusterView:
    """The view from what was read (pure: the tests build views without etcd)."""
    bodies = {mid: _json(kv.value) for kv in alive_kvs if (mid := member_id_of(kv.key, ALIVE)) is not None}
    joins = {mid: rec for kv in join_kvs
             if (mid := member_id_of(kv.key, JOINS)) is not None and (rec := JoinRecord.parse(kv.value))}
    views = []
    for m in sorted(members, key=lambda m: (m.is_learner, m.name, m.id)):
        body = bodies.get(m.id)
        published = MemberReport.parse(body.get("report")) if body else None
        report = published
        if m.id == local.member_id:  # this node's own figures: fresh, not as last published
            report = from_status(local, published.db_quota if published else DEFAULT_QUOTA, now)
        views.append(MemberView(
            member=m, alive=body is not None, report=report,
            reported_at=published.reported_at if published else None,
            etcd_version=str(body.get("etcdVersion") or "") if body else "",
            join=joins.get(m.id), alarms=tuple(sorted(a for mid, a in alarms if mid == m.id))))
    drift: list[tuple[str, str]] = []
    if listing is not None and members:
        from .reconcile.rules import Snapshot, record_drift

        drift = record_drift(Snapshot(members=tuple(members), joins=joins, now=now, records=listing.records,
                                      invalid_records=listing.invalid))
    leader = _json(leader_kv.value) if leader_kv is not None else None
    return ClusterView(now=now, local=local, members=tuple(views),
                       reconciler_leader=str(leader.get("name")) if leader else None, record_drift=tuple(drift),
                       records=len(listing.records) if listing is not None else 0, ready_error=ready_error,
                       read_errors=tuple(errors or ()), backup=backup)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        d = json.loads(raw)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


# -- output ------------------------------------------------------------------------------------

def member_dict(view: ClusterView, v: MemberView) -> dict[str, Any]:
    r, j = v.report, v.join
    age = view.report_age(v)
    return {
        "name": v.name, "id": v.member.hex_id, "role": v.role, "started": v.member.started,
        "healthy": None if v.member.is_learner else v.alive,
        "etcdLeader": v.member.id == view.local.leader_id,
        "reconcilerLeader": bool(v.member.name) and v.member.name == view.reconciler_leader,
        "etcdVersion": (r.version if r else "") or v.etcd_version or None,
        "raftTerm": r.raft_term if r else None, "raftIndex": r.raft_index if r else None,
        "raftAppliedIndex": r.raft_applied_index if r else (j.learner_applied if j else None),
        "dbSize": r.db_size if r else None, "dbSizeInUse": r.db_size_in_use if r else None,
        "dbQuota": r.db_quota if r else None, "alarms": list(v.alarms),
        "progress": round(j.progress, 1) if v.member.is_learner and j and j.progress is not None else None,
        "lastReportSeconds": None if age is None else round(age, 1),
        "peerURL": v.member.peer_url,
    }


def to_dict(view: ClusterView) -> dict[str, Any]:
    reasons = verdict(view)
    local = view.local
    versions = sorted({d for v in view.members if (d := (v.report.version if v.report else "") or v.etcd_version)})
    return {
        "verdict": "degraded" if reasons else "healthy",
        "reasons": reasons,
        "clusterID": format(local.cluster_id, "x"),
        "etcdVersions": versions or [local.version],
        "etcdLeader": view.name_of(local.leader_id) if local.leader_id else None,
        "reconcilerLeader": view.reconciler_leader,
        "member": view.name_of(local.member_id) if view.members else None,
        "memberID": format(local.member_id, "x"),
        "role": "learner" if local.is_learner else "voter",
        "healthy": view.ready_error is None,  # this node: its etcd answers a linearizable read
        "etcdVersion": local.version,
        "voters": sum(1 for v in view.members if not v.member.is_learner),
        "learners": sum(1 for v in view.members if v.member.is_learner),
        "members": [member_dict(view, v) for v in view.members],
        "records": {"inSync": not view.record_drift, "count": view.records,
                    "differ": [{"record": name, "why": why} for name, why in view.record_drift]},
        "memberVersions": dict(sorted((v.name, d) for v in view.members
                                      if (d := v.etcd_version or (v.report.version if v.report else "")))),
        "backup": view.backup,
        "maintenance": maintenance_dict(view),
        "certificates": certificates_dict(view),
    }


def maintenance_dict(view: ClusterView) -> dict[str, Any]:
    """The last maintenance record as written (what, when, by, message, members), and the defrag
    running now: who holds the lock, for how long."""
    lock = view.defrag_running
    running = None
    if lock is not None:
        since = lock.get("since")
        running = {"holder": str(lock.get("holder") or "unknown holder"),
                   "forSeconds": round(max(0.0, view.now - since), 1) if isinstance(since, (int, float)) else None}
    return {"last": view.maintenance_last, "running": running}


def certificates_dict(view: ClusterView) -> dict[str, Any] | None:
    """This node's certificates: the earliest leaf and CA expiries, and each one (None: not read)."""
    if not view.certificates:
        return None
    now = _utc(view.now)
    each = [c.as_dict(Path(view.data_root), now) for c in view.certificates]

    def earliest(ca: bool) -> dict[str, Any] | None:
        dated = [c for c in each if c["isCA"] == ca and c["notAfter"] is not None]
        first = min(dated, key=lambda c: c["remainingSeconds"], default=None)
        return None if first is None else {k: first[k] for k in ("cert", "path", "notAfter", "remainingSeconds")}

    return {"earliestLeaf": earliest(False), "earliestCA": earliest(True), "items": each}
