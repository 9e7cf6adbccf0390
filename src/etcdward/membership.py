"""What the reconciler, the controller and the CLI all need to know about membership safety:
the quorum guard (pure), and the keys that say which controllers are alive and which one leads
the reconciler. It sits below `reconcile/` and `cli/` so neither imports the other's internals.

Liveness: every controller keeps /etcdward/alive/<member id hex> bound to its own lease and
renews it only after its local etcd passed a linearizable read. Client ports listen on
127.0.0.1 only, so no controller can probe another member's etcd; a live key is how the
reconciler and `etcd leave` count "started, healthy voters".
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from .errors import Permanent
from .keys import ALIVE, RECONCILER_LEADER, member_id_of

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints

if TYPE_CHECKING:
    from .memberops import MemberOps
    from .store import Member, Store


def quorum(n: int) -> int:
    return n // 2 + 1


def healthy_voters(members: tuple[Member, ...] | list[Member], alive: frozenset[int] | set[int],
                   self_id: int = 0) -> list[Member]:
    return [m for m in members if not m.is_learner and m.started and (m.id in alive or m.id == self_id)]


def leave_blocker(members: tuple[Member, ...] | list[Member], alive: frozenset[int] | set[int], self_id: int,
                  target: Member) -> str | None:
    """Why removing target is unsafe now, or None. Learners never block."""
    if target.is_learner:
        return None
    voters = [m for m in members if not m.is_learner]
    if len(voters) <= 1:
        return ("Refusing to remove the last voting member; bring another controller online first or clear "
                "spec.leave")
    rest = [m for m in healthy_voters(members, alive, self_id) if m.id != target.id]
    size = len(voters) - 1
    if len(rest) < quorum(size):
        return (f"Refusing to remove: {len(rest)} of the {size} remaining voters are started and healthy, a quorum "
                f"of {size} needs {quorum(size)}")
    return None


def promotion_blocker(members: tuple[Member, ...] | list[Member], alive: frozenset[int] | set[int], self_id: int,
                      learner: Member) -> str | None:
    """Why promoting learner is unsafe now, or None: after the promotion, the healthy voters and
    the learner itself must still make a quorum of the larger cluster. (The learner counts on
    the evidence that it started and etcd found it in sync; that cannot prove it is still alive,
    which only matters when it is needed for that quorum, e.g. when a single voter grows to two.)"""
    voters = [m for m in members if not m.is_learner]
    healthy = len(healthy_voters(members, alive, self_id)) + 1
    if healthy < quorum(len(voters) + 1):
        return (f"not promoting learner {learner.name} (id {learner.hex_id}): only {healthy - 1} of {len(voters)} "
                f"voters are healthy, and {len(voters) + 1} voters need {quorum(len(voters) + 1)}")
    return None


def handover_target(members: tuple[Member, ...] | list[Member], alive: frozenset[int] | set[int], self_id: int,
                    leaving: int) -> Member | None:
    """A healthy voter to move etcd leadership to, other than the leaving member."""
    cands = [m for m in healthy_voters(members, alive, self_id) if m.id != leaving]
    return min(cands, key=lambda m: (m.id != self_id, m.id)) if cands else None


async def current_leader(store: Store) -> dict[str, str] | None:
    kv = await store.get(RECONCILER_LEADER)
    return json.loads(kv.value) if kv else None


async def alive_members(store: Store, fresh: bool = False) -> frozenset[int]:
    """Members whose controller's liveness key is live. With fresh, only those whose lease was
    renewed within the last half of its TTL (its last two beats): a member cut off a moment ago
    keeps its key for up to a whole TTL, and the quorum guard must not count it as healthy for
    that long (it did: a leave was applied 5 s after another member was cut off)."""
    kvs, _ = await store.get_prefix(ALIVE)
    live = {mid: kv.lease for kv in kvs if (mid := member_id_of(kv.key, ALIVE)) is not None}
    if not fresh:
        return frozenset(live)
    from .store.errors import StoreError

    async def renewed_lately(lease: int) -> bool:
        try:
            left, granted = await store.lease_remaining(lease)
        except StoreError:
            return False  # no evidence: not healthy (the guard errs on the side of refusing)
        return left >= 0 and 2 * left >= granted

    import asyncio

    checks = await asyncio.gather(*(renewed_lately(lease) for lease in live.values()))
    return frozenset(mid for mid, ok in zip(live, checks) if ok)


async def alive_versions(store: Store) -> dict[str, str]:
    """Member name -> the etcd version its controller runs, from the live liveness keys."""
    kvs, _ = await store.get_prefix(ALIVE)
    out = {}
    for kv in kvs:
        try:
            body = json.loads(kv.value)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("etcdVersion"), str) and body["etcdVersion"]:
            out[str(body.get("name") or kv.key.removeprefix(ALIVE))] = body["etcdVersion"]
    return out


class LeaveRefused(Permanent):
    """A member that cannot be removed now (not found, or the quorum guard says no)."""


async def remove_member_guarded(store: Store, peer_url: str, force: bool,
                                note: Callable[[str], None] = lambda _: None, ops: MemberOps | None = None,
                                before: Callable[[Member], Awaitable[None]] | None = None) -> Member:
    """Remove the member whose first peer URL is exactly peer_url, from this node: the quorum
    guard unless force; `before` (the backup before a membership change) once the guard has
    passed, and nothing is removed if it raises; if this node's etcd leads and is the one
    leaving, leadership moves to a healthy voter first. The removal is retried while etcd
    refuses it for now (it is idempotent: a member already gone counts as removed). Each
    membership operation goes through `ops`."""
    import logging  # here, as the retry helper (asyncio) and the store: `etcdward status`'s fast path
    # imports this module for the pure guards above only

    from .memberops import MemberAction, MemberOps
    from .retry import retry
    from .store import errors as E

    log = logging.getLogger(__name__)

    ops = ops or MemberOps()

    members = await store.members()
    target = next((m for m in members if m.peer_url == peer_url), None)
    if target is None:
        raise LeaveRefused(f"peer not found: {peer_url}")
    status = await store.status()
    alive = await alive_members(store, fresh=True)
    who = f"{target.name or '(unstarted)'} (id {target.hex_id})"
    if not force:
        why = leave_blocker(members, alive, status.member_id, target)
        if why:
            raise LeaveRefused(f"refusing to remove {who}: {why}; use --force to remove it anyway")
    if before is not None:
        await before(target)
    if target.id == status.leader_id and status.member_id == status.leader_id:
        to = handover_target(members, alive, status.member_id, target.id)
        if to is not None:
            line = f"{who} is the etcd leader: moving leadership to {to.name} (id {to.hex_id})"
            note(line)
            try:
                async with ops.run(log, MemberAction.MOVE_LEADER, to.name, to.id, f"leave: {line}", "leave: "):
                    await store.move_leader(to.id)
            except E.StoreError as e:
                note(f"warning: moving leadership failed ({e}); removing anyway")

    async def remove() -> None:
        try:
            async with ops.run(log, MemberAction.REMOVE, target.name or "(unstarted)", target.id,
                               f"leave: removed member {who} ({peer_url})", "leave: "):
                await store.remove_member(target.id)
        except E.MemberNotFound:
            pass

    await retry(remove, deadline=15.0, backoff=(0.5, 1.0), what="member remove")
    return target
