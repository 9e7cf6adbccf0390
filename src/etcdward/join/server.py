"""The serving side of a join: idempotent learner adds behind a fair, cluster-wide FIFO queue.

A request is answered, in this order:
1. the same peer URL is already an unstarted member or a learner -> that member, at once
   (a joiner that crashed and retries must never wait behind its own learner);
2. a started voter has that peer URL, or another member has that name -> JoinConflict (409);
3. otherwise it takes a place in `/etcdward/join-queue/` (one key per peer URL, ordered by
   create revision, so the order holds whichever controller serves the request) and waits
   until it is first and no learner is pending; then it adds the learner, retrying etcd's
   "unhealthy cluster"/"too many learners" - unless its client has gone away meanwhile.
Each place is bound to a lease of its own (`PLACE_TTL`), refreshed while a request for it is
waiting, on whichever controller: a request that waits longer than `hold` seconds gets
JoinBusy (503 + Retry-After, saying where it stands: its place in line and the learner it
waits behind) and its retry finds the place still there, while a joiner that stopped asking
loses it within PLACE_TTL. The hold is short (~10 s per answer) so that a waiting joiner can
tell its operator where it stands. No wall clocks are compared across hosts.

A joiner keeps its claim on its learner by repeating the same request every few seconds
until its etcd is ready (LearnerClaim in join/client.py): each answered repeat rewrites the learner's
/etcdward/joins/ record, and the reconciler removes an unstarted learner whose record stayed
unchanged for joinerTimeout. A repeat that names its learner (`claim`) is never queued: if
that learner is gone it gets JoinConflict instead of a new learner nobody would start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ..config import is_member_name
from ..keys import JOIN_QUEUE, JOINS, JoinRecord, join_key, member_id_of
from ..memberops import MemberAction, MemberOps
from ..metrics import Metrics
from ..store import KV, Member, Store
from ..store import errors as E

log = logging.getLogger(__name__)

PLACE_TTL = 20  # seconds a place in line outlives the last request that asked for it
# The first in line asks etcd as often as an operator's `etcdctl member add` loop would: etcd
# refuses adds for ~5 s after each join, and a formation waits for the first try after that.
# While a learner is pending it cannot be its turn: it looks less often (the learner's promotion
# ends that). The others only look whether they are first yet: seldom, as their turn comes at
# least one learner start and etcd's ~5 s after the head's add, and the polls of all of them
# load the serving controller and its etcd while that learner's etcd starts.
HEAD_POLL = 0.05
HEAD_BEHIND_LEARNER_POLL = 0.1
QUEUED_POLL = 0.5
HOLD = 9.0  # seconds a queued request waits before 503; with Retry-After 1, an answer every ~10 s
BUSY_RETRY_AFTER = 1
QUEUED_FOR_AT_MOST = 24 * 3600.0  # seconds: a queue-wait start older than this is dropped, not observed


def heartbeat_interval(joiner_timeout: float) -> float:
    """How often a joiner should repeat its request: several times per joinerTimeout, so that
    one lost repeat is not fatal, but not more often than needed."""
    return min(5.0, max(0.5, joiner_timeout / 4))


class JoinConflict(Exception):
    pass


class JoinBusy(Exception):
    """Queued: not this request's turn yet. `position` (1 = first) and `behind` ("<name> <id>" of
    the pending learner, if any) let the joiner say where it stands."""

    def __init__(self, message: str, retry_after: int, position: int = 0, behind: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.position = position
        self.behind = behind


@dataclass(frozen=True)
class JoinAnswer:
    member: Member
    members: list[Member]
    cluster_id: int
    name: str

    def initial_cluster(self) -> list[str]:
        out = []
        for m in self.members:
            name = self.name if m.id == self.member.id else m.name
            out.extend(f"{name}={u}" for u in m.peer_urls)
        return out


def queue_key(peer_url: str) -> str:
    return JOIN_QUEUE + hashlib.sha256(peer_url.encode()).hexdigest()[:24]


def find_conflict(members: list[Member], node: str, peer_url: str,
                  pending_names: Mapping[int, str] | None = None) -> str | None:
    """Why this request conflicts with the member list, or None. `pending_names` maps the IDs
    of learners that have not started yet (and so have no name in etcd) to the node name they
    were requested for (from /etcdward/joins/)."""
    pending_names = pending_names or {}
    for m in members:
        if peer_url in m.peer_urls and m.started and not m.is_learner:
            return (f"peer URL {peer_url} belongs to voting member {m.name} (id {m.hex_id}); remove it first "
                    f"(`etcdward etcd leave --peer-address <address>` or `etcdward patch etcdmember {m.name} --leave`) "
                    "and wipe that node's data with `etcdward reset` before it joins again")
        if peer_url in m.peer_urls:
            continue
        if m.name == node:
            return (f"a member named {node} already exists with peer URL {m.peer_url} (id {m.hex_id}); remove it "
                    f"first (`etcdward patch etcdmember {node} --leave`) or give this node another name "
                    "(spec.storage.etcd.extraArgs.name)")
        if not m.started and pending_names.get(m.id) == node:
            return (f"a learner for {node} was already added with peer URL {m.peer_url} (id {m.hex_id}) and has "
                    "not started; it is removed automatically once its joiner has been silent for "
                    "spec.reconciler.joinerTimeout (at the latest after spec.reconciler.learnerStartTimeout), or "
                    f"remove it now (`etcdctl member remove {m.hex_id}`), or give this node another name "
                    "(spec.storage.etcd.extraArgs.name)")
    return None


def pending_member(members: list[Member], peer_url: str) -> Member | None:
    """The member this peer URL already got from an earlier request, if it is still joining."""
    for m in members:
        if peer_url in m.peer_urls and (not m.started or m.is_learner):
            return m
    return None


def pending_learner(members: list[Member]) -> Member | None:
    """The member holding etcd's one learner slot (a learner, or an added member not started)."""
    return next((m for m in members if m.is_learner or not m.started), None)


class AddRefusals:
    """The current streak of member adds etcd refused as `unhealthy cluster`, on this process's
    monotonic clock: the etcd#14523 workaround (reconcile/unstick.py) reads it. One controller
    runs per process, so its join service notes into the process-wide ADD_REFUSALS."""

    def __init__(self) -> None:
        self.first: float | None = None  # first refusal of the current streak
        self.last = 0.0

    def note(self, refused: bool) -> None:
        now = time.monotonic()
        if not refused:
            self.first = None
            return
        if self.first is None or now - self.last > STREAK_GAP:
            self.first = now
        self.last = now


STREAK_GAP = 5.0  # a pause in refusals this long ends a streak (nobody was asking)
ADD_REFUSALS = AddRefusals()


class JoinAbandoned(Exception):
    """The client that asked went away before its turn; nothing was added."""


class JoinService:
    def __init__(self, store: Store, hold: float = HOLD, joiner_timeout: float = 60.0,
                 before_add: Callable[[str], Awaitable[bool]] | None = None,
                 refusals: AddRefusals = ADD_REFUSALS, ops: MemberOps | None = None,
                 metrics: Metrics | None = None) -> None:
        self.store = store
        self.ops = ops or MemberOps()
        self.metrics = metrics
        # queue key -> when this process first queued it (monotonic): the queue wait metric
        self.queued_since: dict[str, float] = {}
        # spec.backup.beforeMembershipChange: True when it waited for a backup (look again)
        self.before_add = before_add
        self.refusals = refusals
        self.hold = hold
        self.heartbeat_interval = heartbeat_interval(joiner_timeout)
        self._cluster_id = 0
        self._background: set[asyncio.Future[None]] = set()

    async def join(self, node: str, peer_url: str,
                   still_wanted: Callable[[], Awaitable[bool]] | None = None, claim: int | None = None,
                   learner_applied: int | None = None) -> JoinAnswer:
        """`claim`: the member ID a joiner got earlier and repeats this request for (a heartbeat);
        `learner_applied`: the applied index its etcd reported, recorded for `etcdward status`."""
        if claim is not None:
            return await self._renew_claim(node, peer_url, claim, await self.store.members(), learner_applied)
        deadline = time.monotonic() + self.hold
        key = queue_key(peer_url)
        place = 0  # the lease that holds our place in line
        refreshed = 0.0
        refused = ""  # why etcd refused our last add, for the 503 answer
        try:
            while True:
                entries = await self._queue()  # queue first, then members: see _my_turn
                members = await self.store.members()
                mine = pending_member(members, peer_url)
                if mine:
                    self.queued_since.pop(key, None)  # added earlier, here or by another controller
                    answer, *_ = await asyncio.gather(self._answer(mine, members, node),
                                                      self._note_heard(mine, node, peer_url),
                                                      self._leave_queue(key, place))
                    return answer
                pending_names = await self._pending_names(members)
                conflict = find_conflict(members, node, peer_url, pending_names)
                if conflict:
                    raise JoinConflict(conflict)
                if not place or time.monotonic() - refreshed > PLACE_TTL / 4:
                    place, entries = await self._hold_place(key, node, peer_url, entries, place)
                    refreshed = time.monotonic()
                    self.queued_since.setdefault(key, refreshed)
                if self._my_turn(key, entries, members):
                    if still_wanted is not None and not await still_wanted():
                        # A learner nobody will start would block every join behind it.
                        raise JoinAbandoned(f"the client asking for {node} went away before its turn")
                    if self.before_add is not None and await self.before_add(f"learner add of {node}"):
                        continue  # the backup took a while: read the queue and members again
                    try:
                        async with self.ops.run(log, MemberAction.ADD_LEARNER, node, 0, "", "join: ") as op:
                            member, members = await self.store.add_learner(peer_url)
                            op.member_id = member.id
                            op.line = f"added learner {node} (id {member.id:x}, {peer_url})"
                    except E.Unavailable:
                        pass  # the outcome is unknown (logged): the next pass re-reads the member list
                    except E.PeerURLExists:
                        pass  # an earlier attempt of ours landed: the next pass finds it
                    except (E.Temporary, E.MemberNotFound) as e:
                        # Refused for now; the next pass (HEAD_POLL) asks again. MemberNotFound: etcd
                        # derives a new member's ID from its peer URLs and the current second;
                        # re-adding a peer URL within the second it was removed gives a removed
                        # ID, reported as "member not found". The next second works.
                        refused = str(e)
                        self.refusals.note(isinstance(e, E.UnhealthyCluster))
                    else:
                        self.refusals.note(False)
                        self._waited(key)
                        # The joiner is waiting for this answer, and its learner's start opens
                        # etcd's window for the next add: the join record (which the reconciler
                        # needs) in parallel, the place in line after the answer.
                        answer, _ = await asyncio.gather(
                            self._answer(member, members, node),
                            self.store.put(join_key(member.id), JoinRecord.new(node, peer_url).to_json()))
                        self._in_background(self._leave_queue(key, place))
                        return answer
                pause = (QUEUED_POLL if self._position(key, entries) > 1 else
                         HEAD_BEHIND_LEARNER_POLL if pending_learner(members) else HEAD_POLL)
                if time.monotonic() + pause > deadline:
                    raise self._busy(node, key, entries, members, pending_names, refused)
                await asyncio.sleep(pause)
        except (JoinConflict, JoinAbandoned, E.StoreError):
            self.queued_since.pop(key, None)
            await self._leave_queue(key, place)
            raise

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)  # a reference until it is done: the loop keeps only weak ones
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (e := task.exception()) is not None:  # a bug: one line, not a traceback
            log.warning("join: bookkeeping after an answer failed (%s: %s)", type(e).__name__, e)

    def _waited(self, key: str) -> None:
        """A learner was added for this queue key: observe how long it waited in line here. A
        place nobody completes is forgotten once it is older than any place can be."""
        now = time.monotonic()
        since = self.queued_since.pop(key, None)
        if since is not None and self.metrics is not None:
            self.metrics.join_queue_wait.observe(now - since)
        self.queued_since = {k: t for k, t in self.queued_since.items() if now - t < QUEUED_FOR_AT_MOST}

    async def _renew_claim(self, node: str, peer_url: str, claim: int, members: list[Member],
                           learner_applied: int | None = None) -> JoinAnswer:
        """A heartbeat: the same answer while the claimed member is there, never a new learner."""
        mine = next((m for m in members if m.id == claim and peer_url in m.peer_urls), None)
        if mine is None:
            raise JoinConflict(
                f"learner {claim:x} for {node} ({peer_url}) is no longer in the member list (it was removed, most "
                "likely because its etcd did not start in time); this node has to join again: stop it, run "
                "`etcdward reset` and start it with a new join token")
        answer, _ = await asyncio.gather(self._answer(mine, members, node),
                                         self._note_heard(mine, node, peer_url, learner_applied))
        return answer

    async def _note_heard(self, member: Member, node: str, peer_url: str, learner_applied: int | None = None) -> None:
        """Record that the joiner of `member` asked again: any change of its join record's mod
        revision tells the reconciler the joiner is alive (it compares no timestamps). With the
        learner's applied index, also this voter's own, read now: the learner's progress."""
        if member.started and not member.is_learner:
            return  # a voter: nothing left to keep alive
        key = join_key(member.id)
        try:
            kv = await self.store.get(key)
            record = JoinRecord.parse(kv.value) if kv else None
            cluster_applied = None
            if learner_applied is not None:
                cluster_applied = (await self.store.status()).raft_applied_index
            # "added" bounds the learner's life (learnerStartTimeout): never reset it on a repeat.
            heard = (record or JoinRecord.new(node, peer_url)).heard(learner_applied, cluster_applied)
            await self.store.put(key, heard.to_json())
        except E.StoreError as e:
            log.debug("join %s: could not note the repeated request (%s); the joiner repeats it", node, e)

    def _busy(self, node: str, key: str, entries: list[KV], members: list[Member],
              pending_names: Mapping[int, str], refused: str) -> JoinBusy:
        position = self._position(key, entries)
        total = max(len(entries), position)
        where = f"join of {node} is queued: {position} of {total} in line"
        learner = pending_learner(members)
        behind = ""
        if learner is not None:
            name = learner.name or pending_names.get(learner.id, "")
            name = name if is_member_name(name) else "(unnamed)"  # it goes into a header: keep it ASCII
            state = "is catching up" if learner.started else "has not started yet"
            behind = f"{name} {learner.hex_id}"
            where += f", waiting behind learner {name} (id {learner.hex_id}, {learner.peer_url}) that {state}"
        elif position == 1 and refused:
            where += f", etcd refuses new learners for now ({refused})"
        elif position > 1:
            where += ", waiting for the requests ahead"
        return JoinBusy(where + "; retry", BUSY_RETRY_AFTER, position, behind)

    async def _pending_names(self, members: list[Member]) -> dict[int, str]:
        """Requested names of the unstarted members (etcd knows no name for them yet)."""
        unstarted = {m.id for m in members if not m.started}
        if not unstarted:
            return {}
        kvs, _ = await self.store.get_prefix(JOINS)
        names = {}
        for kv in kvs:
            mid, record = member_id_of(kv.key, JOINS), JoinRecord.parse(kv.value)
            if mid in unstarted and record is not None:
                names[mid] = record.node
        return names

    async def cluster_id(self) -> int:
        if not self._cluster_id:  # a running cluster's ID never changes: ask once
            self._cluster_id = (await self.store.status()).cluster_id
        return self._cluster_id

    async def _answer(self, member: Member, members: list[Member], node: str) -> JoinAnswer:
        return JoinAnswer(member=member, members=members, cluster_id=await self.cluster_id(), name=node)

    async def _queue(self) -> list[KV]:
        kvs, _ = await self.store.get_prefix(JOIN_QUEUE)
        return sorted(kvs, key=lambda kv: kv.create_revision)

    async def _hold_place(self, key: str, node: str, peer_url: str, entries: list[KV],
                          place: int) -> tuple[int, list[KV]]:
        """Keep (or take) this peer URL's place in line; returns its lease and the new queue."""
        existing = next((kv for kv in entries if kv.key == key), None)
        for lease in (place, existing.lease if existing else 0):
            if lease and await self.store.refresh_lease(lease) > 0:
                if existing is not None and existing.lease == lease:
                    return lease, entries  # still in line, in the same place
        lease = await self.store.grant_lease(PLACE_TTL)
        body = json.dumps({"node": node, "peerURL": peer_url})
        if not await self.store.create(key, body, lease=lease):
            # Another request for the same peer URL holds the place: share it.
            await self.store.revoke_lease(lease)
            kv = await self.store.get(key)
            lease = kv.lease if kv else 0
        return lease, await self._queue()

    async def _leave_queue(self, key: str, place: int) -> None:
        try:
            if place:
                await self.store.revoke_lease(place)  # deletes the key with it
            await self.store.delete(key)
        except E.StoreError as e:
            log.debug("could not leave join queue: %s (the place expires with its lease)", e)

    @staticmethod
    def _my_turn(key: str, entries: list[KV], members: list[Member]) -> bool:
        # The member list is read after the queue, so a learner added by the previous head
        # (which leaves the queue only after its add) is always visible here.
        if not entries or entries[0].key != key:
            return False
        return pending_learner(members) is None

    @staticmethod
    def _position(key: str, entries: list[KV]) -> int:
        return next((i + 1 for i, kv in enumerate(entries) if kv.key == key), len(entries) + 1)
