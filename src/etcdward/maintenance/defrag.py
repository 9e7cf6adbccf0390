"""Defragmenting members: this one (through the local etcd), or several, one at a time.

    defrag_this_member(store)         on the member's own host: moves etcd leadership away first
                                      when this member leads (and another healthy voter can take
                                      it), then defragments; used by the CLI and the API endpoint
    defrag_members(store, ...)        several members, followers first, the leader (as it is at
                                      each step) last; the local one directly, the others through
                                      their controllers; refuses while the cluster is unhealthy
    recover_nospace(store, ...)       NOSPACE: compact to the current revision, defragment every
                                      live member, disarm once every db is below 90 % of the quota
    record(store, entry)              /etcdward/maintenance/last: what was done, when, by whom
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Permanent, Temporary
from ..keys import JOIN_QUEUE, MAINTENANCE_LAST
from ..membership import handover_target
from ..store import Member, Store
from ..store import errors as E
from . import plan
from .figures import LiveController, live_controllers
from .remote import ControllerClient, RemoteDefragFailed

log = logging.getLogger(__name__)

LEADER_MOVE_WAIT = 5.0  # seconds to see leadership leave this member after MoveLeader


class DefragRefused(Permanent):
    """The cluster is not healthy enough to defragment a member now; the message names why."""


@dataclass(frozen=True)
class DefragReport:
    member_id: int
    name: str
    before: plan.Figures
    after: plan.Figures
    seconds: float
    was_leader: bool = False
    moved_leadership_to: str = ""

    def line(self) -> str:
        role = "etcd leader" if self.was_leader else "follower"
        moved = f", leadership moved to {self.moved_leadership_to}" if self.moved_leadership_to else ""
        return (f"defragmented {self.name} (id {self.member_id:x}, {role}{moved}): db {mib(self.before.db_size)} -> "
                f"{mib(self.after.db_size)} in {self.seconds:.2f}s")

    def as_dict(self) -> dict[str, Any]:
        return {"memberID": format(self.member_id, "x"), "name": self.name, "before": self.before.as_dict(),
                "after": self.after.as_dict(), "seconds": round(self.seconds, 3), "wasLeader": self.was_leader,
                "movedLeadershipTo": self.moved_leadership_to}

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DefragReport:
        before, after = plan.Figures.parse(body.get("before")), plan.Figures.parse(body.get("after"))
        try:
            if before is None or after is None:
                raise ValueError("no figures")
            return cls(int(body["memberID"], 16), str(body["name"]), before, after, float(body["seconds"]),
                       bool(body.get("wasLeader")), str(body.get("movedLeadershipTo") or ""))
        except (KeyError, ValueError, TypeError) as e:
            raise RemoteDefragFailed(f"a controller answered a defrag with an unexpected body ({e})") from None


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


async def defrag_this_member(store: Store) -> DefragReport:
    """Defragment the member `store` talks to; if it is the etcd leader, hand leadership to a
    healthy voter first (a defragmenting leader stalls every client of the cluster)."""
    members = await store.members()
    status = await store.status()
    me = next((m for m in members if m.id == status.member_id), None)
    name = me.name if me else format(status.member_id, "x")
    moved = ""
    was_leader = status.leader_id == status.member_id
    if was_leader:
        target = handover_target(members, set(await live_controllers(store)), 0, status.member_id)
        if target is not None:
            await store.move_leader(target.id)
            moved = target.name
            deadline = time.monotonic() + LEADER_MOVE_WAIT
            while (await store.status()).leader_id == status.member_id and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            log.info("maintenance: moved etcd leadership from %s to %s before defragmenting", name, target.name)
    t0 = time.monotonic()
    await store.defragment()
    seconds = time.monotonic() - t0
    after = await store.status()
    return DefragReport(status.member_id, name, plan.Figures(status.db_size, status.db_size_in_use),
                        plan.Figures(after.db_size, after.db_size_in_use), seconds, was_leader, moved)


@dataclass
class ClusterView:
    members: list[Member]
    live: dict[int, LiveController]
    queued_joins: int
    leader_id: int
    self_id: int
    revision: int = 0
    names: dict[int, str] = field(default_factory=dict)


async def look(store: Store) -> ClusterView:
    members = await store.members()
    status = await store.status()
    live = await live_controllers(store)
    queued, _ = await store.get_prefix(JOIN_QUEUE)
    return ClusterView(members, live, len(queued), status.leader_id, status.member_id, status.revision,
                       {m.id: m.name or m.hex_id for m in members})


async def defrag_one(store: Store, view: ClusterView, member_id: int, client: ControllerClient | None,
                     trigger: str = "manual") -> DefragReport:
    if member_id == view.self_id:
        return await defrag_this_member(store)
    who = view.names.get(member_id, format(member_id, "x"))
    ctl = view.live.get(member_id)
    if ctl is None or not ctl.api_url:
        raise RemoteDefragFailed(f"defrag of {who}: its controller publishes no API address (not live, or a "
                                 "controller older than this one)")
    if client is None:
        raise RemoteDefragFailed(f"defrag of {who}: no client for other controllers")
    return DefragReport.parse(await client.defrag(ctl.api_url, member_id, who, trigger))


async def defrag_members(store: Store, client: ControllerClient | None, only: Iterable[int] | None = None,
                         note: Callable[[DefragReport], None] = lambda _: None,
                         trigger: str = "manual") -> list[DefragReport]:
    """Defragment the members in `only` (default: every member), one at a time, followers first
    and the etcd leader last; DefragRefused before each one while the cluster is unhealthy."""
    view = await look(store)
    remaining = set(only) if only is not None else {m.id for m in view.members}
    done: list[DefragReport] = []
    while remaining:
        why = plan.cluster_blocker(view.members, view.live, view.queued_joins)
        if why:
            raise DefragRefused(f"refusing to defragment: {why}")
        remaining &= {m.id for m in view.members}
        if not remaining:
            break
        nxt = plan.defrag_order(remaining, view.leader_id)[0]
        report = await defrag_one(store, view, nxt, client, trigger)
        note(report)
        done.append(report)
        remaining.discard(nxt)
        if remaining:
            view = await look(store)
    return done


@dataclass(frozen=True)
class NospaceOutcome:
    compacted_to: int
    reports: list[DefragReport]
    skipped: list[str]  # members not defragmented: not live, or failed (those also in `failed`)
    failed: list[str]
    disarmed: bool
    message: str


async def recover_nospace(store: Store, client: ControllerClient, quota: int,
                          note: Callable[[DefragReport | None], None] = lambda _: None) -> NospaceOutcome:
    """Free space and disarm NOSPACE. Writes are refused anyway, so a member that is down costs
    no availability here: every *live* member is defragmented (the others are named), one at a
    time, the leader last. The alarm is disarmed only once every defragmented db is below 90 % of
    the quota (plan.can_disarm): before that the next writes would raise it again. `note` hears of each member done (None:
    it failed)."""
    view = await look(store)
    await store.compact(view.revision)
    live_ids = [m.id for m in view.members if m.id in view.live and m.started and not m.is_learner]
    skipped = [view.names[m.id] for m in view.members if m.id not in live_ids]
    reports: list[DefragReport] = []
    failed: list[str] = []
    remaining = set(live_ids)
    while remaining:
        nxt = plan.defrag_order(remaining, view.leader_id)[0]
        try:
            reports.append(await defrag_one(store, view, nxt, client, "nospace"))
            note(reports[-1])
        except (E.StoreError, RemoteDefragFailed, Temporary) as e:
            failed.append(f"{view.names.get(nxt, format(nxt, 'x'))} ({e})")
            note(None)
        remaining.discard(nxt)
        view = await look(store)
    largest = max((r.after.db_size for r in reports), default=0)
    disarmed = bool(reports) and plan.can_disarm(largest, quota)
    if disarmed:
        for alarm in await store.alarms():
            if alarm.kind == "NOSPACE":
                await store.disarm(alarm)
    skipped += failed
    sizes = ", ".join(f"{r.name} (db {mib(r.before.db_size)} -> {mib(r.after.db_size)})" for r in reports) or "no member"
    what = (f"compacted to revision {view.revision}, defragmented {sizes}"
            + (f" (skipped: {'; '.join(skipped)})" if skipped else ""))
    message = (f"NOSPACE: {what}; disarmed the alarm" if disarmed else
               f"NOSPACE: {what}; the largest db is still {mib(largest)} of the {mib(quota)} quota (disarmed below "
               f"{1 - plan.DISARM_HEADROOM:.0%}): delete data (deletes are allowed) and it recovers on its next try, "
               "or raise spec.storage.etcd.quotaBackendBytes")
    return NospaceOutcome(view.revision, reports, skipped, failed, disarmed, message)


async def record(store: Store, what: str, by: str, message: str, reports: list[DefragReport]) -> None:
    """Best effort: the record is news, never a reason to fail the maintenance itself."""
    now = time.time()
    entry = {"what": what, "by": by, "unix": now,
             "when": dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "message": message, "members": [r.as_dict() for r in reports]}
    try:
        await store.put(MAINTENANCE_LAST, json.dumps(entry))
    except E.StoreError as e:
        log.warning("maintenance: could not record what was done (%s)", e)
