"""The reconcile rules as pure functions of hand-built snapshots: asserts the decision lines."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdward import records
from etcdward.frozen import replace
from etcdward.keys import JoinRecord
from etcdward.membership import leave_blocker
from etcdward.reconcile import rules
from etcdward.reconcile.rules import Snapshot
from etcdward.store import Member

NOW = 1_000_000.0


def member(i: int, name: str | None = None, learner: bool = False, started: bool = True) -> Member:
    n = (name or f"n{i}") if started else ""
    return Member(i, n, (f"https://10.0.0.{i}:2380",), (), learner)


def record(m: Member | None = None, name: str | None = None, *, mid: int | None = None, leave: bool = False,
           joined: str = "True", rev: int = 10, status: str = "", message: str = "") -> records.EtcdMember:
    hexid = format(mid if mid is not None else m.id, "x") if (m or mid) else ""  # type: ignore[union-attr]
    r = records.new(name or m.name, f"10.0.0.{(m.id if m else mid) or 0}", hexid, now=0)  # type: ignore[union-attr]
    r = r.with_joined(joined, "x", now=0)
    return replace(r, leave=leave, resource_version=rev, create_revision=rev, reconcile_status=status,
                               message=message)


def snap(members: list[Member], recs: list[records.EtcdMember], *, alive: set[int] | None = None, leader: int = 1,
         self_id: int = 1, **kw: object) -> Snapshot:
    return Snapshot(members=tuple(members), joins={}, now=NOW, records=tuple(recs),
                    alive=frozenset(alive if alive is not None else {m.id for m in members}), leader_id=leader,
                    self_id=self_id, **kw)  # type: ignore[arg-type]


def first(s: Snapshot) -> rules.Action:
    actions = rules.decide(s)
    assert actions, rules.idle(s).message
    return actions[0]


M1, M2, M3 = member(1), member(2), member(3)
THREE = [M1, M2, M3]


def test_in_sync_is_idle() -> None:
    s = snap(THREE, [record(M1), record(M2), record(M3)])
    assert rules.decide(s) == []
    assert rules.idle(s).message == "no action: 3 voters, 0 learners, 3 records"
    assert not rules.idle(s).waiting


def test_promotion_comes_first() -> None:
    s = snap([M1, member(2, learner=True)], [])
    a = first(s)
    assert (a.kind, a.message) == ("promote", "promoted learner n2 (id 2)")


def test_missing_record_is_created() -> None:
    a = first(snap(THREE, [record(M1), record(M2)]))
    assert a.message == "created missing record n3 for member id 3"
    assert a.kind == "write-record" and a.record is not None and a.record.resource_version == 0
    assert (a.record.member_id, a.record.peer_address, a.record.joined) == ("3", "10.0.0.3", "True")


def test_unstarted_learner_gets_no_record() -> None:
    assert rules.decide(snap([M1, member(2, learner=True, started=False)], [record(M1)])) == []


def test_duplicate_keeps_the_record_named_like_the_member() -> None:
    c1 = member(0x8E9E, "c1")
    canon = record(c1, rev=50)  # younger than the duplicate: the name wins, not the age
    dup = record(c1, "c1.example.org", rev=5)
    a = first(snap([c1], [canon, dup], leader=c1.id, self_id=c1.id))
    assert a.kind == "delete-duplicate" and a.record == dup
    assert a.message == "deleted duplicate record c1.example.org of member id 8e9e (record c1 is the canonical one)"


def test_duplicate_without_matching_name_keeps_the_oldest() -> None:
    m = member(7, "renamed")
    old, young = record(m, "a", rev=5), record(m, "b", rev=9)
    s = snap([M1, m], [record(M1), young, old])
    a = first(s)
    assert a.kind == "delete-duplicate" and a.record == young
    assert "(record a is the canonical one)" in a.message


def test_gone_member_is_marked_not_joined_and_kept() -> None:
    s = snap([M1, M2], [record(M1), record(M2), record(M3)])
    a = first(s)
    assert a.message == "marked record n3 Joined=False: no member id 3 in etcd"
    assert a.record is not None and a.record.joined == "False"
    assert (a.record.message, a.record.reconcile_status) == ("No such member ID", "Success")
    done = replace(a.record, resource_version=11)
    assert rules.decide(snap([M1, M2], [record(M1), record(M2), done])) == []


def test_gone_member_that_asked_to_leave_reads_removed() -> None:
    a = first(snap([M1, M2], [record(M1), record(M2), record(M3, leave=True)]))
    assert a.record is not None and a.record.message == "Member removed from cluster"
    assert a.record.reconcile_status == "Success" and a.record.joined == "False"


def test_leave_removes_a_follower() -> None:
    a = first(snap(THREE, [record(M1), record(M2), record(M3, leave=True)]))
    assert (a.kind, a.member_id) == ("remove-member", 3)
    assert a.message == "removed member n3 (id 3) on request (spec.leave); 2 voters left"


def test_leave_refused_for_the_last_voter() -> None:
    r = record(M1, leave=True)
    a = first(snap([M1], [r]))
    assert a.kind == "write-record" and a.record is not None
    assert a.record.reconcile_status == "Failed" and "last voting member" in a.record.message
    assert a.message.startswith("refused leave of n1 (id 1): Refusing to remove the last voting member")
    s = snap([M1], [a.record])  # recorded: nothing more to write, the line says why
    assert rules.decide(s) == []
    assert rules.idle(s).message == "no action: 1 voters, 0 learners, 1 records; leave of n1 refused"


def test_leave_refused_when_the_rest_would_lose_quorum() -> None:
    # n2 is not alive: removing n3 would leave 2 voters of which only n1 is healthy
    a = first(snap(THREE, [record(M1), record(M2), record(M3, leave=True)], alive={1, 3}))
    assert a.record is not None and a.record.reconcile_status == "Failed"
    assert a.record.message == ("Refusing to remove: 1 of the 2 remaining voters are started and healthy, "
                                "a quorum of 2 needs 2")


def test_leave_of_a_dead_member_is_allowed() -> None:
    a = first(snap(THREE, [record(M1), record(M2), record(M3, leave=True)], alive={1, 2}))
    assert a.kind == "remove-member"


def test_the_reconciler_itself_leaving_resigns() -> None:
    a = first(snap(THREE, [record(M1, leave=True), record(M2), record(M3)], self_id=1, leader=2))
    assert a.kind == "resign"
    assert a.record is not None and a.record.message == "Waiting for another controller to take over"


def test_etcd_leader_hands_over_first() -> None:
    recs = [record(M1), record(M2, leave=True), record(M3)]
    a = first(snap(THREE, recs, self_id=1, leader=2))
    assert a.kind == "write-record" and a.record is not None
    assert a.record.message == "Waiting for n2 to hand over etcd leadership"
    s = snap(THREE, [recs[0], a.record, recs[2]], self_id=1, leader=2, handover_since={"n2": NOW - 1})
    assert rules.decide(s) == []
    assert rules.idle(s).message.startswith("waiting: leave of n2: it is the etcd leader")
    assert rules.idle(s).waiting
    late = replace(s, handover_since={"n2": NOW - 10})
    a = first(late)
    assert a.kind == "remove-member" and "still the etcd leader" in a.message


def test_leave_is_never_honoured_on_a_duplicate() -> None:
    c1 = member(1, "c1")
    dup = record(c1, "c1.example.org", leave=True, rev=1)
    s = snap([c1, M2, M3], [record(c1, rev=20), dup, record(M2), record(M3)])
    kinds = [(a.kind, a.record.name if a.record else None) for a in rules.decide(s)]
    assert kinds[0] == ("delete-duplicate", "c1.example.org")
    assert not any(k == "remove-member" for k, _ in kinds)


def test_leave_of_a_learner_needs_no_guard() -> None:
    ln = member(2, learner=True)
    s = snap([M1, ln], [record(M1), record(ln, leave=True, joined="Unknown")])
    kinds = [a.kind for a in rules.decide(s)]
    assert kinds[:2] == ["promote", "remove-member"]


def test_record_of_a_departed_member_is_rebound_and_its_leave_cleared() -> None:
    old = record(name="n2", mid=0xDEAD, leave=True, joined="False", status="Success", message="Member removed")
    new = member(0xBEEF, "n2")
    a = first(snap([M1, new], [record(M1), old]))
    assert a.message == "re-bound record n2 from departed member id dead to member id beef"
    assert a.record is not None and a.record.resource_version == old.resource_version
    assert (a.record.member_id, a.record.leave, a.record.joined) == ("beef", False, "True")
    assert a.record.uid == old.uid


def test_status_follows_etcd() -> None:
    stale = record(M2, joined="False", status="Success", message="No such member ID")
    a = first(snap([M1, M2], [record(M1), stale]))
    assert a.message == "synced record n2 with member id 2: Joined=True, peerAddress 10.0.0.2"
    assert a.record is not None and (a.record.reconcile_status, a.record.message) == ("", "")


def test_invalid_records_are_noted_and_never_overwritten() -> None:
    s = snap([M1, M2], [record(M1)], invalid_records=((records.key("n2"), "kind: expected 'EtcdMember'"),))
    assert rules.decide(s) == []
    assert "invalid record /etcdward/etcdmembers/n2" in rules.idle(s).message


def test_guard_counts() -> None:
    five = [member(i) for i in range(1, 6)]
    assert leave_blocker(five, {1, 2, 3, 4, 5}, 1, five[4]) is None
    assert leave_blocker(five, {1, 2, 3}, 1, five[4]) is None  # 4 left, 3 healthy >= quorum(4)=3
    assert leave_blocker(five, {1, 2}, 1, five[4]) is not None
    two = five[:2]
    assert leave_blocker(two, {1}, 1, two[1]) is None  # 2 -> 1: the one left is healthy
    assert leave_blocker(two, set(), 2, two[0]) is None  # the reconciler counts itself healthy


# -- property: repeated passes converge, and never remove unsafely ----------------------------

@st.composite
def worlds(draw: st.DrawFn) -> Snapshot:
    n = draw(st.integers(1, 5))
    ms = [member(i, learner=draw(st.booleans()) and i > 1) for i in range(1, n + 1)]
    recs: dict[str, records.EtcdMember] = {}
    rev = 1
    for m in ms:
        for name in draw(st.lists(st.sampled_from([m.name, m.name + ".example.org", "x" + m.name]), max_size=2,
                                  unique=True)):
            recs[name] = record(m, name, leave=draw(st.booleans()), rev=rev)
            rev += 1
    for i in draw(st.lists(st.integers(10, 12), max_size=2, unique=True)):  # records of gone members
        recs[f"gone{i}"] = record(name=f"gone{i}", mid=i, rev=rev)
        rev += 1
    alive = draw(st.sets(st.sampled_from([m.id for m in ms]))) | {1}
    voters = [m.id for m in ms if not m.is_learner]
    return snap(ms, list(recs.values()), alive=alive, leader=draw(st.sampled_from(voters)), self_id=1)


def step(s: Snapshot, a: rules.Action, rev: int) -> Snapshot:
    recs = {r.name: r for r in s.records}
    members = list(s.members)
    if a.kind == "promote":
        members = [replace(m, is_learner=False) if m.id == a.member_id else m for m in members]
    elif a.kind == "delete-duplicate":
        assert a.record is not None
        recs.pop(a.record.name)
    elif a.kind in ("write-record", "resign"):
        assert a.record is not None
        recs[a.record.name] = replace(a.record, resource_version=rev,
                                                  create_revision=a.record.create_revision or rev)
    elif a.kind == "remove-member":
        target = next(m for m in members if m.id == a.member_id)
        if not target.is_learner:
            assert leave_blocker(s.members, s.alive, s.self_id, target) is None
            assert target.id != s.self_id
        assert a.record is not None and rules.is_canonical(s, a.record) and a.record.leave
        members = [m for m in members if m.id != a.member_id]
    return replace(s, members=tuple(members), records=tuple(recs.values()),
                               handover_since={n: NOW - 60 for n in rules.leave_waiting_on_handover(s)})


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_passes_converge_to_the_member_list(s: Snapshot) -> None:
    for rev in range(100, 200):
        actions = rules.decide(s)
        if not actions or actions[0].kind == "resign":
            break
        s = step(s, actions[0], rev)
    else:
        raise AssertionError(f"no convergence: {rules.decide(s)[:3]}")
    if actions:
        return  # the reconciler handed over; another one continues
    ids = [r.member_id for r in s.records]
    assert len(ids) == len(set(ids)), "duplicate member IDs"
    started = {m.hex_id for m in s.members if m.started}
    assert started <= set(ids), "a started member without a record"
    for r in s.records:
        live = r.member_id_int in {m.id for m in s.members}
        assert (r.joined != "False") == live, r


def test_withdrawn_leave_clears_the_refusal() -> None:
    r = record(M1, status="Failed", message="Refusing to remove the last voting member; ...")
    a = first(snap([M1], [r]))
    assert a.message.endswith("cleared the status of a withdrawn leave")
    assert a.record is not None and (a.record.reconcile_status, a.record.message) == ("", "")


def test_everybody_leaving_removes_the_others_then_refuses_the_last() -> None:
    s = snap([M1, M2], [record(M1, leave=True), record(M2, leave=True)], self_id=1, leader=1)
    a = first(s)
    assert (a.kind, a.member_id) == ("remove-member", 2)  # not a resign: nobody could take over
    s = snap([M1], [record(M1, leave=True), record(M2, leave=True, joined="False", status="Success")])
    assert first(s).record.reconcile_status == "Failed"  # type: ignore[union-attr]


def test_started_learner_that_never_catches_up_is_removed() -> None:
    m2 = member(2, learner=True)
    young = replace(snap([M1, m2], [record(M1)], learner_timeout=60),
                                joins={2: JoinRecord("n2", m2.peer_url, NOW - 100)})
    assert first(young).kind == "promote"
    old = replace(young, joins={2: JoinRecord("n2", m2.peer_url, NOW - 121)})
    a = first(old)
    assert a.kind == "remove-stalled-learner"
    assert a.message == "removed learner n2 (id 2, https://10.0.0.2:2380) that was not promotable within 120s"


def test_no_promotion_in_a_degraded_cluster() -> None:
    learner = member(4, learner=True)
    ok = snap([M1, M2, M3, learner], [record(M1), record(M2), record(M3)], alive={1, 2})
    assert first(ok).kind == "promote"  # 2 healthy voters + the learner = quorum of 4
    bad = snap([M1, M2, M3, learner], [record(M1), record(M2), record(M3)], alive={1})
    assert all(a.kind != "promote" for a in rules.decide(bad))
    assert rules.idle(bad).message.startswith(
        "waiting: not promoting learner n4 (id 4): only 1 of 3 voters are healthy, and 4 voters need 3")
    single = snap([M1, member(2, learner=True)], [record(M1)], alive=set())  # the reconciler counts itself
    assert first(single).kind == "promote"


def test_unstarted_learner_is_kept_while_its_joiner_is_heard_and_removed_when_silent() -> None:
    ln = member(2, learner=True, started=False)
    joins = {2: JoinRecord("n2", ln.peer_url, NOW - 200)}  # well within learnerStartTimeout (300)
    heard = replace(snap([M1, ln], [record(M1)]), joins=joins, joiner_timeout=60,
                                last_heard={2: NOW - 5})
    assert rules.decide(heard) == []
    assert rules.decide(replace(heard, last_heard={2: NOW - 60})) == []  # exactly the timeout: kept
    silent = replace(heard, last_heard={2: NOW - 61})
    a = first(silent)
    assert (a.kind, a.member_id) == ("remove-stalled-learner", 2)
    assert a.message == ("removed learner n2 (id 2, https://10.0.0.2:2380) that did not start: its joiner was not "
                         "heard from for 60s (joinerTimeout)")
    # learnerStartTimeout still bounds a learner whose joiner keeps repeating its request
    old = replace(heard, joins={2: JoinRecord("n2", ln.peer_url, NOW - 301)})
    assert first(old).message.endswith("that did not start within 300s")
    # a started learner is not judged by its joiner's silence (it may be catching up)
    started = replace(silent, members=(M1, member(2, learner=True)), alive=frozenset({1}))
    assert [a.kind for a in rules.decide(started)][:1] == ["promote"]

