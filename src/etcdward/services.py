"""What a controller runs once its etcd is a voting member, and what it does when it learns
that it was removed from the cluster.

    join-api     the join API (api.py)
    reconciler   campaigns for the reconciler role and reconciles while leading
    liveness     keeps /etcdward/alive/<member id> while the local etcd answers linearizable reads
    self         upserts this node's own EtcdMember record, then every 0.5 s: notices that its
                 member is gone from the member list (-> MemberWasRemoved: stop etcd, tombstone,
                 exit 0), and, when its record asks it to leave while it is the etcd leader,
                 moves etcd leadership to a healthy voter (only the leader can: client ports
                 listen on 127.0.0.1, so nobody else can reach this node's etcd)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import TYPE_CHECKING

from . import records
from .paths import atomic_write
from .store import Store
from .store import errors as E
from .supervisor import MemberWasRemoved

if TYPE_CHECKING:
    from .node import Controller

log = logging.getLogger(__name__)

SELF_POLL = 0.5


async def start_voter_services(ctl: "Controller") -> list[asyncio.Task[None]]:
    from .api import serve_api
    from .reconcile.election import Liveness
    from .reconcile.loop import run_reconciler

    assert ctl.store is not None and ctl.ident is not None and ctl.ident.member_id
    body = {"name": ctl.ident.name, "memberID": ctl.ident.member_id, "peerAddress": ctl.cfg.peer_address}
    alive = Liveness(ctl.store, ctl.ident.member_id, body, ttl=ctl.cfg.spec.reconciler.lease_ttl)
    tasks = [asyncio.create_task(serve_api(ctl), name="join-api"),
             asyncio.create_task(alive.run(), name="liveness"),
             asyncio.create_task(run_self(ctl), name="self"),
             asyncio.create_task(run_reconciler(ctl), name="reconciler")]
    return tasks


async def upsert_own_record(store: Store, name: str, peer_address: str, member_id: str) -> None:
    """Retry until this node's record is written (never clearing its own spec.leave)."""
    delay = 0.2
    while True:
        try:
            live = {m.id for m in await store.members()}
            what = await records.upsert_self(store, name, peer_address, member_id, live)
            log.info("own EtcdMember record %s (member id %s): %s", name, member_id, what)
            return
        except records.RecordError as e:
            log.warning("own EtcdMember record %s is not a valid record (%s); leaving it alone: fix or delete it "
                        "(`etcdward delete etcdmember %s`) and restart this controller", name, e, name)
            return
        except (E.StoreError, RuntimeError) as e:
            log.debug("own record %s: %s; retrying", name, e)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)


async def run_self(ctl: "Controller") -> None:
    assert ctl.store is not None and ctl.ident is not None and ctl.ident.member_id
    store, name, hex_id = ctl.store, ctl.ident.name, ctl.ident.member_id
    await upsert_own_record(store, name, ctl.cfg.peer_address, hex_id)
    while True:
        await asyncio.sleep(SELF_POLL)
        try:
            await check_self(store, name, int(hex_id, 16))
        except E.StoreError as e:
            log.debug("self check: %s", e)


async def check_self(store: Store, name: str, my_id: int) -> None:
    from .membership import alive_members, handover_target, leave_blocker

    members = await store.members()
    me = next((m for m in members if m.id == my_id), None)
    if members and me is None:
        raise MemberWasRemoved(f"member {name} (id {my_id:x}) is no longer in the etcd member list")
    if me is None:
        return
    try:
        rec = await records.get(store, name)
    except records.RecordError:
        return
    if rec is None or not rec.leave or rec.member_id_int != my_id:
        return
    status = await store.status()
    if status.leader_id != my_id:
        return
    alive = await alive_members(store)
    if leave_blocker(members, alive, my_id, me) is not None:
        return  # the reconciler records why; leadership stays here
    target = handover_target(members, alive, my_id, my_id)
    if target is None:
        return
    log.info("this member (%s) is leaving and is the etcd leader: moving leadership to %s (id %s)",
             name, target.name, target.hex_id)
    try:
        await store.move_leader(target.id)
    except E.StoreError as e:
        log.warning("moving etcd leadership to %s failed: %s; trying again", target.name, e)


def write_tombstone(ctl: "Controller", why: str) -> None:
    from .node import move_aside

    data = ctl.data
    dest = move_aside(data.etcd) if data.etcd.exists() else None
    body = {
        "removedAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "reason": why,
        "member": ctl.ident.name if ctl.ident else None,
        "memberID": ctl.ident.member_id if ctl.ident else None,
        "clusterID": ctl.ident.cluster_id if ctl.ident else None,
        "etcdDataMovedTo": str(dest) if dest else None,
    }
    atomic_write(data.tombstone, json.dumps(body, indent=2) + "\n")
    log.warning(
        "this member was removed from the etcd cluster (%s); its etcd data dir was moved to %s. "
        "To rejoin: `etcdward reset --data-dir %s`, then start the controller with a new join token.",
        why, dest, data.root)
