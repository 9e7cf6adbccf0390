"""No join that hangs on etcd#14523: a member whose etcd keeps refusing member adds as
`unhealthy cluster` while every voter is live restarts its own etcd.

Before 3.5.30/3.6.11, etcd refuses a member add unless the member that receives it has been
connected to every voter for 5 s (its rafthttp peer status). After a partition heals, a peer
dial that started before the heal can fail after it and leave that peer marked inactive while
its streams work (etcd#14523): that member then refuses every add until its etcd restarts.
Only the serving member's etcd holds the stale status, and only its controller can reach it
(client ports are loopback-only), so the controller whose join service saw the refusals acts:

    decide()   pure: refused for > STREAK s, the last refusal recent, every voter's liveness
               key live (a voter that is really down is etcd#21640, where the refusal is
               right) -> move etcd leadership away first if this member leads, then restart
               this member's etcd (a fresh transport), with one log line saying so
    step()     one check with real data; run_unstick() every CHECK s once a streak of
               refusals could be due, not before (next_check)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..heartbeats import ETCD_CALL
from ..join.server import ADD_REFUSALS, AddRefusals
from ..memberops import MemberAction, MemberOps
from ..membership import alive_members, handover_target
from ..store import Member, Store
from ..store import errors as E
from ..voterdeps import VoterDeps

log = logging.getLogger(__name__)

STREAK = 15.0  # seconds of refused adds before acting
RECENT = 3.0  # the last refusal at most this long ago: adds are still being asked for and refused
COOLDOWN = 60.0  # after acting, let the restarted etcd reconnect before judging again
CHECK = 1.0


@dataclass(frozen=True)
class Unstick:
    move_to: Member | None  # this member leads: move etcd leadership there before the restart
    message: str


def decide(first: float | None, last: float, now: float, members: list[Member], alive: frozenset[int],
           self_id: int, leader_id: int) -> Unstick | None:
    """Whether to restart this member's etcd because its adds are refused on a stale peer status."""
    if first is None or now - first < STREAK or now - last > RECENT:
        return None
    voters = [m for m in members if not m.is_learner]
    if len(voters) < 2 or any(not m.started or (m.id not in alive and m.id != self_id) for m in voters):
        return None  # a voter is down or not started: etcd is right to refuse
    move_to = handover_target(members, alive, self_id, self_id) if leader_id == self_id else None
    moved = f"moving etcd leadership to {move_to.name} (id {move_to.hex_id}) and " if move_to else ""
    return Unstick(move_to, (
        f"etcd refused member adds as 'unhealthy cluster' for {now - first:.0f}s while all {len(voters)} voters are "
        f"live (etcd#14523: a healed peer left marked inactive): {moved}restarting this member's etcd"))


async def step(store: Store, refusals: AddRefusals, restart: Callable[[], Awaitable[None]],
               ops: MemberOps | None = None) -> Unstick | None:
    """One check; acts and returns what it did, or None."""
    now = time.monotonic()
    if refusals.first is None or now - refusals.first < STREAK or now - refusals.last > RECENT:
        return None  # nothing to judge (no streak, too young, or nobody asks any more): no etcd round trips
    status = await store.status()
    members = await store.members()
    alive = await alive_members(store)
    u = decide(refusals.first, refusals.last, time.monotonic(), members, alive, status.member_id, status.leader_id)
    if u is None:
        return None
    log.warning("%s", u.message)
    refusals.note(False)
    if u.move_to is not None:
        to = u.move_to
        try:
            async with (ops or MemberOps()).run(log, MemberAction.MOVE_LEADER, to.name, to.id, (
                    f"moved etcd leadership to {to.name} (id {to.hex_id}) before restarting this member's etcd")):
                await store.move_leader(to.id)
        except E.StoreError as e:
            log.debug("moving etcd leadership before the restart failed (%s); restarting anyway", e)
    await restart()
    return u


def next_check(first: float | None, now: float) -> float:
    """Seconds until a check can find something to judge: none before a streak is STREAK old,
    and a streak that starts now is due STREAK from now at the earliest."""
    if first is None:
        return STREAK
    return max(CHECK, first + STREAK - now)


async def run_unstick(deps: VoterDeps, refusals: AddRefusals = ADD_REFUSALS) -> None:
    if deps.restart_etcd is None:
        await asyncio.Future()  # nothing to restart with (never in a controller): idle, never "done"
    ops = MemberOps(deps.metrics)
    # a round that acts: status, members, liveness keys, a leadership move, and etcd's stop grace
    with deps.heartbeats.loop("unstick", every=CHECK, work=6 * ETCD_CALL) as hb:
        while True:
            wait = next_check(refusals.first, time.monotonic())
            hb.beat(next_in=wait)
            await asyncio.sleep(wait)
            try:
                if await step(deps.store, refusals, deps.restart_etcd, ops) is not None:
                    hb.beat(next_in=COOLDOWN)
                    await asyncio.sleep(COOLDOWN)
            except E.StoreError as e:
                log.debug("unstick check: %s", e)
