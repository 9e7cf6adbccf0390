"""Pure reconcile rules: (snapshot) -> actions, most urgent first. No I/O here.

The loop applies the first action and logs its message as the pass's one decision line.
The etcd member list is the truth; the EtcdMember records converge to it:

  promote started learners; remove learners that never started (learnerStartTimeout), or
  whose joiner stopped repeating its join request (joinerTimeout)
  1. duplicates: records sharing a member ID -> keep the one named like the etcd member
     (else the oldest), delete the others
  2. spec.leave on the canonical record of a live member -> guarded removal (quorum guard;
     the reconciler leaving itself hands over; the etcd leader hands over first)
  3. every started member has one record (create it, or re-bind a record left behind under
     its name by a departed member)
  4. a record whose member ID is not in etcd -> Joined=False ("No such member ID", or "Member
     removed from cluster" when it asked to leave)
  5. status of the canonical records follows etcd (Joined, peerAddress)
  forget join bookkeeping of members that are voters or gone
"""

from __future__ import annotations

from collections.abc import Mapping
import enum

from ..addresses import is_member_name
from ..frozen import field, frozen
from ..keys import ETCDMEMBERS, JoinRecord
from ..records import MSG_JOINED, MSG_NO_SUCH_MEMBER, MSG_REMOVED, EtcdMember, for_member, peer_host
from ..membership import healthy_voters, leave_blocker, promotion_blocker
from ..store import Member

MSG_TAKEOVER = "Waiting for another controller to take over"


@frozen
class Snapshot:
    members: tuple[Member, ...]
    joins: Mapping[int, JoinRecord]  # member id -> join request that created it
    now: float
    learner_timeout: float = 300.0
    first_seen: Mapping[int, float] = field(default_factory=dict)  # fallback age for unknown learners
    # Unstarted learner -> when its joiner was last heard from, on this reconciler's clock (the
    # time the loop saw the learner's join record change; never a time written by another host).
    last_heard: Mapping[int, float] = field(default_factory=dict)
    joiner_timeout: float = 60.0
    records: tuple[EtcdMember, ...] = ()
    invalid_records: tuple[tuple[str, str], ...] = ()  # (key, why) of unparseable records
    alive: frozenset[int] = frozenset()  # live liveness keys; renewed lately (alive_members fresh) when a guard reads it
    leader_id: int = 0  # etcd's raft leader, as the local member sees it
    self_id: int = 0  # the member this reconciler runs on
    handover_since: Mapping[str, float] = field(default_factory=dict)  # record -> first pass it waited on a handover
    handover_timeout: float = 5.0

    def name_of(self, m: Member) -> str:
        if m.name:
            return m.name
        j = self.joins.get(m.id)
        return j.node if j else "(unstarted)"

    def member(self, member_id: int | None) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)


class Kind(enum.StrEnum):
    """What an action does; the loop has one handler per kind (loop.Reconciler.HANDLERS)."""
    PROMOTE = "promote"
    REMOVE_STALLED_LEARNER = "remove-stalled-learner"
    FORGET_JOIN = "forget-join"
    DELETE_DUPLICATE = "delete-duplicate"
    WRITE_RECORD = "write-record"
    REMOVE_MEMBER = "remove-member"
    RESIGN = "resign"


# The actions that take a member out of etcd (spec.backup.beforeMembershipChange backs up first).
REMOVALS = frozenset({Kind.REMOVE_MEMBER, Kind.REMOVE_STALLED_LEARNER})


@frozen
class Action:
    kind: Kind
    member_id: int
    message: str
    record: EtcdMember | None = None  # write-record: the new state (resource_version 0 = create)


# A learner that started gets this many learnerStartTimeouts to catch up (a large database
# takes a while to stream) before it counts as stalled.
STARTED_LEARNER_FACTOR = 2


def learner_age(s: Snapshot, m: Member) -> float:
    j = s.joins.get(m.id)
    since = j.added if j else s.first_seen.get(m.id, s.now)
    return s.now - since


def joiner_silence(s: Snapshot, m: Member) -> float:
    """Seconds since the joiner of this unstarted learner was last heard from (0 if unknown)."""
    return s.now - s.last_heard.get(m.id, s.now)


def membership_actions(s: Snapshot) -> list[Action]:
    out: list[Action] = []
    for m in sorted(s.members, key=lambda m: m.id):
        if not m.is_learner:
            continue
        if m.started and learner_age(s, m) > STARTED_LEARNER_FACTOR * s.learner_timeout:
            # It started once but etcd never found it in sync: most likely it died after
            # starting. It holds etcd's only learner slot, so it would block every later join.
            out.append(Action(Kind.REMOVE_STALLED_LEARNER, m.id, (
                f"removed learner {m.name} (id {m.hex_id}, {m.peer_url}) that was not promotable within "
                f"{STARTED_LEARNER_FACTOR * s.learner_timeout:.0f}s")))
        elif m.started and promotion_blocker(s.members, s.alive, s.self_id, m) is None:
            out.append(Action(Kind.PROMOTE, m.id, f"promoted learner {m.name} (id {m.hex_id})"))
        elif learner_age(s, m) > s.learner_timeout:
            out.append(Action(Kind.REMOVE_STALLED_LEARNER, m.id, (
                f"removed learner {s.name_of(m)} (id {m.hex_id}, {m.peer_url}) that did not start within "
                f"{s.learner_timeout:.0f}s")))
        elif not m.started and joiner_silence(s, m) > s.joiner_timeout:
            # A live joiner repeats its join request every few seconds until its etcd is ready:
            # silence means it died or never meant to start, and the learner slot is the only one.
            out.append(Action(Kind.REMOVE_STALLED_LEARNER, m.id, (
                f"removed learner {s.name_of(m)} (id {m.hex_id}, {m.peer_url}) that did not start: its joiner "
                f"was not heard from for {s.joiner_timeout:g}s (joinerTimeout)")))
    return out


def join_actions(s: Snapshot) -> list[Action]:
    out = []
    ids = {m.id for m in s.members}
    pending = {m.id for m in s.members if m.is_learner or not m.started}
    for mid in sorted(s.joins):
        if mid not in pending:
            state = "gone" if mid not in ids else "voting"
            out.append(Action(Kind.FORGET_JOIN, mid, f"forgot join record of {s.joins[mid].node} (id {mid:x}, {state})"))
    return out


# -- duplicates -----------------------------------------------------------------------------

def canonical_records(s: Snapshot) -> dict[str, EtcdMember]:
    """member ID (hex) -> the record that stands for it: the one whose name equals the etcd
    member's name, else the oldest (lowest create revision)."""
    groups: dict[str, list[EtcdMember]] = {}
    for r in s.records:
        if r.member_id:
            groups.setdefault(r.member_id, []).append(r)
    out = {}
    for mid, recs in groups.items():
        m = s.member(int(mid, 16))
        named = [r for r in recs if m is not None and m.name and r.name == m.name]
        out[mid] = named[0] if named else min(recs, key=lambda r: (r.create_revision, r.name))
    return out


def is_canonical(s: Snapshot, r: EtcdMember) -> bool:
    return canonical_records(s).get(r.member_id) == r


def duplicate_actions(s: Snapshot) -> list[Action]:
    out = []
    canon = canonical_records(s)
    for r in sorted(s.records, key=lambda r: r.name):
        keep = canon.get(r.member_id)
        if keep is not None and keep.name != r.name:
            out.append(Action(Kind.DELETE_DUPLICATE, r.member_id_int or 0, (
                f"deleted duplicate record {r.name} of member id {r.member_id} "
                f"(record {keep.name} is the canonical one)"), r))
    return out


# -- leave ----------------------------------------------------------------------------------

def successors(members: tuple[Member, ...] | list[Member], recs: tuple[EtcdMember, ...] | list[EtcdMember],
               alive: frozenset[int] | set[int], self_id: int) -> list[Member]:
    """Healthy voters other than self that do not ask to leave: who can take the reconciler
    role over from a controller that is leaving."""
    leaving = {r.member_id_int for r in recs if r.leave}
    return [m for m in healthy_voters(members, alive) if m.id != self_id and m.id not in leaving]


def _status_write(r: EtcdMember, reconcile_status: str, message: str, line: str) -> Action | None:
    if (r.reconcile_status, r.message) == (reconcile_status, message):
        return None
    return Action(Kind.WRITE_RECORD, r.member_id_int or 0, line,
                  r.with_status(reconcile_status=reconcile_status, message=message))


def leave_waiting_on_handover(s: Snapshot) -> set[str]:
    """Records whose leave waits for their member (the etcd leader) to hand leadership over."""
    out = set()
    for r in s.records:
        m = s.member(r.member_id_int)
        if (r.leave and m is not None and m.id == s.leader_id and m.id != s.self_id and not m.is_learner
                and is_canonical(s, r) and leave_blocker(s.members, s.alive, s.self_id, m) is None):
            out.add(r.name)
    return out


def leave_actions(s: Snapshot) -> tuple[list[Action], list[str]]:
    """(actions, notes): notes are states that need no write (refusals already recorded, waits)."""
    out: list[Action] = []
    notes: list[str] = []
    for r in sorted(s.records, key=lambda r: r.name):
        m = s.member(r.member_id_int)
        if not r.leave or m is None or not is_canonical(s, r):
            continue  # gone members: rule 4; duplicates never act on leave (k0s #5369)
        who = f"{r.name} (id {m.hex_id})"
        if m.is_learner:
            out.append(Action(Kind.REMOVE_MEMBER, m.id, f"removed leaving learner {who} on request (spec.leave)", r))
            continue
        blocker = leave_blocker(s.members, s.alive, s.self_id, m)
        if blocker:
            a = _status_write(r, "Failed", blocker, f"refused leave of {who}: {blocker}")
            out.extend([a] if a else [])
            notes.append(f"leave of {r.name} refused")
            continue
        if m.id == s.self_id:
            if not successors(s.members, s.records, s.alive, s.self_id):
                # every other healthy voter is leaving too: remove them first; this one ends up
                # the last voter and is refused, instead of nobody leading
                notes.append(f"leave of {r.name} waits: every other healthy voter is leaving too")
                continue
            out.append(Action(Kind.RESIGN, m.id, (
                f"leave of {who}: this controller is the member leaving; resigned the reconciler role so that "
                "another controller removes it"), r.with_status(reconcile_status="", message=MSG_TAKEOVER)))
            continue
        if m.id == s.leader_id:
            since = s.handover_since.get(r.name, s.now)
            if s.now - since < s.handover_timeout:
                msg = f"Waiting for {r.name} to hand over etcd leadership"
                a = _status_write(r, "", msg, f"leave of {who}: waiting for it to hand over etcd leadership")
                out.extend([a] if a else [])
                notes.append(f"waiting: leave of {r.name}: it is the etcd leader, waiting for the handover")
                continue
            out.append(Action(Kind.REMOVE_MEMBER, m.id, (
                f"removed member {who} on request (spec.leave) while it was still the etcd leader (no handover "
                f"within {s.handover_timeout:.0f}s; etcd elects a new leader)"), r))
            continue
        voters = sum(1 for x in s.members if not x.is_learner) - 1
        out.append(Action(Kind.REMOVE_MEMBER, m.id, (
            f"removed member {who} on request (spec.leave); {voters} voters left"), r))
    return out, notes


# -- records follow etcd --------------------------------------------------------------------

def record_actions(s: Snapshot) -> tuple[list[Action], list[str]]:
    out: list[Action] = []
    notes: list[str] = []
    by_name = {r.name: r for r in s.records}
    by_id = {r.member_id for r in s.records if r.member_id}
    invalid = {k.removeprefix(ETCDMEMBERS) for k, _ in s.invalid_records}
    live = {m.id for m in s.members}
    # rule 3: every started member has a record
    for m in sorted(s.members, key=lambda m: m.id):
        if not m.started or m.hex_id in by_id:
            continue
        if not is_member_name(m.name):
            notes.append(f"member {m.name!r} (id {m.hex_id}) has no valid record name")
            continue
        if m.name in invalid:
            continue  # noted as an invalid record; never overwritten
        old = by_name.get(m.name)
        if old is None:
            out.append(Action(Kind.WRITE_RECORD, m.id, f"created missing record {m.name} for member id {m.hex_id}",
                              for_member(m, s.now)))
        elif old.member_id_int in live:
            notes.append(f"record {m.name} belongs to another live member ({old.member_id})")
        else:
            fresh = for_member(m, s.now)
            new = old.with_status(member_id=m.hex_id, peer_address=fresh.peer_address, leave=False,
                                  reconcile_status="", message="").with_joined(fresh.joined,
                                                                               fresh.conditions[0].message, s.now)
            out.append(Action(Kind.WRITE_RECORD, m.id, (
                f"re-bound record {m.name} from departed member id {old.member_id or '(none)'} to member id "
                f"{m.hex_id}"), new))
    # rule 4: records of members that are not in etcd
    for r in sorted(s.records, key=lambda r: r.name):
        if r.member_id_int in live:
            continue
        if r.leave:
            if r.joined == "False" and r.reconcile_status == "Success":
                continue
            new = r.with_status(reconcile_status="Success", message=MSG_REMOVED).with_joined(
                "False", MSG_REMOVED, s.now)
            line = f"marked record {r.name} Joined=False: member id {r.member_id or '(none)'} has left the cluster"
        else:
            if r.joined == "False":
                continue
            new = r.with_status(reconcile_status="Success", message=MSG_NO_SUCH_MEMBER).with_joined(
                "False", MSG_NO_SUCH_MEMBER, s.now)
            line = f"marked record {r.name} Joined=False: no member id {r.member_id or '(none)'} in etcd"
        out.append(Action(Kind.WRITE_RECORD, r.member_id_int or 0, line, new))
    # rule 5: canonical records follow their member's state
    for mid, r in sorted(canonical_records(s).items()):
        m = s.member(int(mid, 16))
        if m is None or not m.started:
            continue
        want = "Unknown" if m.is_learner else "True"
        peer = peer_host(m.peer_url) or r.peer_address
        # a leave that was withdrawn (or a record that was marked gone) no longer explains anything
        stale = not r.leave and (r.reconcile_status == "Failed" or r.message.startswith("Waiting for")
                                 or r.joined == "False")
        if r.joined == want and r.peer_address == peer and not stale:
            continue
        new = r.with_status(peer_address=peer).with_joined(
            want, MSG_JOINED if want == "True" else "Learner, not promoted yet", s.now)
        if stale:
            new = new.with_status(reconcile_status="", message="")
        out.append(Action(Kind.WRITE_RECORD, m.id, (
            f"synced record {r.name} with member id {m.hex_id}: Joined={want}, peerAddress {peer}"
            + (", cleared the status of a withdrawn leave" if stale and r.reconcile_status == "Failed" else "")), new))
    return out, notes


def decide(s: Snapshot) -> list[Action]:
    return analyse(s)[0]


def analyse(s: Snapshot) -> tuple[list[Action], list[str]]:
    leave, leave_notes = leave_actions(s)
    recs, rec_notes = record_actions(s)
    actions = [*membership_actions(s), *duplicate_actions(s), *leave, *recs, *join_actions(s)]
    promo_notes = [f"waiting: {b}" for m in s.members if m.is_learner and m.started
                   and (b := promotion_blocker(s.members, s.alive, s.self_id, m))]
    notes = [*promo_notes, *leave_notes, *rec_notes,
             *(f"invalid record {k}: {why}" for k, why in s.invalid_records)]
    return actions, notes


def records_out_of_sync(s: Snapshot) -> list[str]:
    """Names of the records that differ from the member list: missing, stale, duplicate or
    invalid (etcdward_records_out_of_sync)."""
    recs, _ = record_actions(s)
    names = {a.record.name for a in [*duplicate_actions(s), *recs] if a.record is not None}
    return sorted(names | {k.removeprefix(ETCDMEMBERS) for k, _ in s.invalid_records})


@frozen
class Idle:
    """A pass with nothing to do: its decision line, and whether something is in progress that
    the loop should poll for quickly (a leave waiting on a handover, a promotion held back)."""
    message: str
    waiting: bool


def idle(s: Snapshot) -> Idle:
    voters = sum(1 for m in s.members if not m.is_learner)
    learners = len(s.members) - voters
    _, notes = analyse(s)
    waits = [n for n in notes if n.startswith("waiting: ")]
    if waits:
        return Idle("; ".join([waits[0], *(n.removeprefix("waiting: ") for n in waits[1:])]), waiting=True)
    line = f"no action: {voters} voters, {learners} learners, {len(s.records)} records"
    return Idle("; ".join([line, *notes]), waiting=False)


def record_drift(s: Snapshot) -> list[tuple[str, str]]:
    """(record name, how it differs from the member list) for each record the reconciler would
    still change: what `etcdward status` calls records out of sync. Same rules as above, so the
    view cannot disagree with what the reconciler does."""
    out = [(a.record.name, f"duplicate of record {canonical_records(s)[a.record.member_id].name}")
           for a in duplicate_actions(s) if a.record is not None]
    by_name = {r.name: r for r in s.records}
    for a in record_actions(s)[0]:
        new = a.record
        if new is None:
            continue
        old = by_name.get(new.name)
        if old is None:
            out.append((new.name, f"missing for member id {new.member_id}"))
            continue
        fields = (("memberID", old.member_id, new.member_id), ("Joined", old.joined, new.joined),
                  ("peerAddress", old.peer_address, new.peer_address))
        diffs = [f"{label} {was or '(none)'}, etcd says {want}" for label, was, want in fields if was != want]
        out.append((new.name, "; ".join(diffs) or "status not updated yet"))
    out.extend((k.removeprefix(ETCDMEMBERS), f"invalid: {why}") for k, why in s.invalid_records)
    return out
