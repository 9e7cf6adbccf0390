"""The "self" service of a voting controller: it upserts this node's own EtcdMember record,
then notices that its member is gone from the member list (-> MemberWasRemoved: stop etcd,
tombstone, exit 0), and, when its record asks it to leave while it is the etcd leader, moves
etcd leadership to a healthy voter (only the leader can: client ports listen on 127.0.0.1, so
nobody else can reach this node's etcd).

It looks when the process's member list changes or its own record changes (a watch); only
while its record asks it to leave does it also look every SELF_POLL seconds, because who leads
etcd cannot be watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from . import records
from .heartbeats import ETCD_CALL
from .memberops import MemberAction, MemberOps
from .membership import alive_members, handover_target, leave_blocker
from .memberlist import MemberListReader
from .retry import retry
from .store import Member, Store
from .store import errors as E
from .supervisor import MemberWasRemoved
from .tasks import cancel_and_wait
from .voterdeps import VoterDeps

log = logging.getLogger(__name__)

SELF_POLL = 0.5  # while the own record asks to leave
RECHECK = 30.0  # otherwise at least this often, even if no change was seen


async def upsert_own_record(store: Store, name: str, peer_address: str, member_id: str) -> None:
    """Retry until this node's record is written (never clearing its own spec.leave); a record
    that is not valid is left alone with a warning."""

    async def upsert() -> None:
        live = {m.id for m in await store.members()}
        what = await records.upsert_self(store, name, peer_address, member_id, live)
        log.info("own EtcdMember record %s (member id %s): %s", name, member_id, what)

    try:
        await retry(upsert, deadline=math.inf, backoff=(0.2, 0.4, 0.8, 1.6, 3.0), what=f"own record {name}",
                    retry_on=(E.StoreError, records.RecordConflict))
    except records.RecordError as e:
        log.warning("own EtcdMember record %s is not a valid record (%s); leaving it alone: fix or delete it "
                    "(`etcdward delete etcdmember %s`) and restart this controller", name, e, name)


async def run_self(deps: VoterDeps, members: MemberListReader) -> None:
    store, name, hex_id = deps.store, deps.ident.name, deps.ident.member_id or ""
    await upsert_own_record(store, name, deps.cfg.peer_address, hex_id)
    ops = MemberOps(deps.metrics)
    wake = asyncio.Event()
    followers = [asyncio.create_task(members.notify(wake), name="self-member-list"),
                 asyncio.create_task(_follow_record(store, name, wake), name="self-record-watch")]
    leaving = False
    try:
        # woken by a change (or RECHECK at the latest); a round: the own record, status, liveness
        # keys, a fresh member list and a leadership move
        with deps.heartbeats.loop("self", every=RECHECK, work=5 * ETCD_CALL) as hb:
            while True:
                hb.beat()
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: never swallows a cancel (tasks.py)
                    async with asyncio.timeout(SELF_POLL if leaving else RECHECK):
                        await wake.wait()
                wake.clear()
                try:
                    leaving = await check_self(store, name, int(hex_id, 16), members.latest, ops)
                except E.StoreError as e:
                    log.debug("self check: %s", e)
    finally:
        await cancel_and_wait(followers)


async def _follow_record(store: Store, name: str, wake: asyncio.Event) -> None:
    async for _batch in store.follow_prefix(records.key(name)):
        wake.set()


async def check_self(store: Store, name: str, my_id: int, members: list[Member] | None,
                     ops: MemberOps | None = None) -> bool:
    """Raises MemberWasRemoved when this member is gone from `members`; hands etcd leadership
    over when the own record asks to leave. True while the own record asks to leave."""
    if not members:
        return False  # not read yet
    me = next((m for m in members if m.id == my_id), None)
    if me is None:
        raise MemberWasRemoved(f"member {name} (id {my_id:x}) is no longer in the etcd member list")
    try:
        rec = await records.get(store, name)
    except records.RecordError:
        return False
    if rec is None or not rec.leave or rec.member_id_int != my_id:
        return False
    status = await store.status()
    if status.leader_id != my_id:
        return True
    members = await store.members()  # fresh: this acts on it
    alive = await alive_members(store, fresh=True)
    if leave_blocker(members, alive, my_id, me) is not None:
        return True  # the reconciler records why; leadership stays here
    target = handover_target(members, alive, my_id, my_id)
    if target is None:
        return True
    line = (f"this member ({name}) is leaving and is the etcd leader: moved leadership to {target.name} "
            f"(id {target.hex_id})")
    try:
        async with (ops or MemberOps()).run(log, MemberAction.MOVE_LEADER, target.name, target.id, line):
            await store.move_leader(target.id)
    except E.StoreError as e:
        log.warning("moving etcd leadership to %s failed: %s; trying again", target.name, e)
    return True
