"""The pure parts of `etcdward status`: the health verdict from a view, the reports the
controllers publish (when a put is due), the learner's progress in its join record."""

from __future__ import annotations

from etcdward import config as C
from etcdward.clusterview import STALE_AFTER, STUCK_REPEATS, ClusterView, MemberView, alarms_in, to_dict, verdict
from etcdward.frozen import replace
from etcdward.keys import JoinRecord
from etcdward.memberreport import DEFAULT_QUOTA, REPORT_EVERY, MemberReport, due
from etcdward.store import Member, Status

NOW = 1_000_000.0
M1, M2, M3 = (Member(i, f"n{i}", (f"https://10.0.0.{i}:2380",), (), False) for i in (1, 2, 3))
LOCAL = Status(member_id=1, cluster_id=99, leader_id=1, raft_term=2, raft_index=50, is_learner=False,
               version="3.5.30", db_size=100, errors=(), raft_applied_index=50)


def report(**kw: object) -> MemberReport:
    base = MemberReport(raft_term=2, raft_index=50, raft_applied_index=50, db_size=1 << 20, db_size_in_use=1 << 19,
                        db_quota=DEFAULT_QUOTA, leader="1", is_learner=False, errors=(), version="3.5.30",
                        reported_at=NOW - 2)
    return replace(base, **kw)  # type: ignore[arg-type]


def healthy_view(**kw: object) -> ClusterView:
    base = ClusterView(now=NOW, local=LOCAL, members=tuple(MemberView(m, True, report(), reported_at=NOW - 2)
                                                           for m in (M1, M2, M3)),
                       reconciler_leader="n2", records=3)
    return replace(base, **kw)  # type: ignore[arg-type]


def with_member(view: ClusterView, i: int, **kw: object) -> ClusterView:
    members = list(view.members)
    members[i] = replace(members[i], **kw)  # type: ignore[arg-type]
    return replace(view, members=tuple(members))


def test_a_healthy_view_has_no_reasons_and_every_field() -> None:
    view = healthy_view()
    assert verdict(view) == []
    out = to_dict(view)
    assert out["verdict"] == "healthy" and out["etcdLeader"] == "n1" and out["reconcilerLeader"] == "n2"
    assert [m["reconcilerLeader"] for m in out["members"]] == [False, True, False]
    assert out["members"][0]["lastReportSeconds"] == 2.0 and out["members"][0]["dbQuota"] == DEFAULT_QUOTA


def test_each_degradation_is_one_reason_naming_the_member() -> None:
    cases = {
        "not reporting: its controller's liveness key expired": with_member(healthy_view(), 2, alive=False, report=None),
        "is not reporting: its last report is": with_member(healthy_view(), 1, reported_at=NOW - STALE_AFTER - 1),
        "alarm NOSPACE on member n2": with_member(healthy_view(), 1, alarms=("NOSPACE",)),
        "82% of its quota": with_member(healthy_view(), 0, report=report(db_size=int(0.82 * DEFAULT_QUOTA))),
        "no reconciler leader": healthy_view(reconciler_leader=None),
        "etcd has no leader": healthy_view(local=replace(LOCAL, leader_id=0)),
        "records out of sync with the member list: n3 (missing": healthy_view(
            record_drift=(("n3", "missing for member id 3"),)),
        "fails a linearizable read: timed out": healthy_view(ready_error="timed out"),
    }
    for needle, view in cases.items():
        reasons = verdict(view)
        assert len(reasons) == 1 and needle in reasons[0], (needle, reasons)
        assert to_dict(view)["verdict"] == "degraded" and to_dict(view)["reasons"] == reasons


def test_a_db_below_80_percent_or_without_quota_is_fine() -> None:
    assert verdict(with_member(healthy_view(), 0, report=report(db_size=int(0.79 * DEFAULT_QUOTA)))) == []
    assert verdict(with_member(healthy_view(), 0, report=report(db_size=10 * DEFAULT_QUOTA, db_quota=0))) == []


def test_under_nospace_old_reports_are_not_a_second_reason() -> None:
    view = with_member(with_member(healthy_view(), 1, reported_at=NOW - STALE_AFTER - 1), 0, alarms=("NOSPACE",))
    assert verdict(view) == ["alarm NOSPACE on member n1 (id 1)"]


def test_a_learner_degrades_only_when_stuck() -> None:
    learner = Member(4, "n4", ("https://10.0.0.4:2380",), (), True)
    catching_up = JoinRecord("n4", learner.peer_url, NOW - 30, seen=5, heard_at=NOW - 1, learner_applied=20,
                             cluster_applied=50)
    view = replace(healthy_view(), members=(*healthy_view().members,
                                                        MemberView(learner, False, join=catching_up)))
    assert verdict(view) == []
    row = to_dict(view)["members"][3]
    assert row["progress"] == 40.0 and row["healthy"] is None and row["lastReportSeconds"] == 1.0
    stuck = with_member(view, 3, join=replace(catching_up, stalled=STUCK_REPEATS))
    assert ["learner n4" in r and "stuck at 40%" in r for r in verdict(stuck)] == [True]
    caught_up = with_member(view, 3, join=replace(catching_up, learner_applied=50, stalled=99))
    assert verdict(caught_up) == []  # in sync, waiting for its promotion: not stuck
    unstarted = replace(learner, name="")
    assert verdict(with_member(view, 3, member=unstarted, join=None)) == []


def test_failed_reads_after_a_failed_linearizable_read_are_named_once() -> None:
    view = healthy_view(ready_error="timed out", read_errors=(("the liveness keys", "timed out"),
                                                              ("the join records", "timed out")))
    assert verdict(view)[1] == "could not read the liveness keys, the join records"


def test_alarms_are_read_from_status_errors() -> None:
    assert alarms_in(["etcdserver: no leader", "memberID:12 alarm:NOSPACE "]) == [(12, "NOSPACE")]


def test_a_report_is_published_on_a_material_change_or_when_old() -> None:
    last = report(reported_at=NOW)
    assert due(None, last)
    assert not due(last, report(reported_at=NOW + 1, raft_applied_index=999, db_size=5))  # moving figures alone
    assert due(last, report(reported_at=NOW + 1, db_size=int(0.81 * DEFAULT_QUOTA)))  # near its quota now
    assert due(last, report(reported_at=NOW + 1, leader="2"))
    assert due(last, report(reported_at=NOW + 1, errors=("memberID:1 alarm:NOSPACE ",)))
    assert due(last, report(reported_at=NOW + REPORT_EVERY))
    assert MemberReport.parse(last.to_dict()) == last
    assert MemberReport.parse({"raftTerm": "x"}) is None and MemberReport.parse(None) is None


def test_quota_follows_the_config() -> None:
    # the figure each controller publishes (voter.py): spec.storage.etcd.quotaBackendBytes, else etcd's default
    assert C.parse("spec: {}").etcd.quota_bytes == DEFAULT_QUOTA
    assert C.parse("spec: {storage: {etcd: {quotaBackendBytes: 16777216}}}").etcd.quota_bytes == 16 * 1024**2


def test_join_record_counts_repeats_without_progress() -> None:
    rec = JoinRecord("n4", "https://10.0.0.4:2380", NOW)
    one = rec.heard(10, 50, now=NOW + 5)
    assert (one.seen, one.stalled, one.progress, one.heard_at) == (1, 0, 20.0, NOW + 5)
    two = one.heard(10, 60, now=NOW + 10)
    assert two.stalled == 1 and JoinRecord.parse(two.to_json()) == two
    assert two.heard(11, 60).stalled == 0  # it moved
    assert two.heard().learner_applied == 10 and two.heard().stalled == 1  # a joiner that sent none: kept
    old = JoinRecord.parse('{"node": "n4", "peerURL": "https://10.0.0.4:2380", "added": 1.0}')
    assert old is not None and old.progress is None and old.heard_at is None


def test_records_out_of_sync_name_the_record_and_the_difference() -> None:
    from etcdward.reconcile.rules import Snapshot, record_drift
    from etcdward.records import for_member

    n1 = for_member(M1, NOW)
    moved = replace(for_member(M2, NOW), peer_address="10.9.9.9")
    s = Snapshot(members=(M1, M2, M3), joins={}, now=NOW, records=(n1, moved))
    assert record_drift(s) == [("n3", "missing for member id 3"), ("n2", "peerAddress 10.9.9.9, etcd says 10.0.0.2")]
    assert record_drift(replace(s, records=(n1, for_member(M2, NOW), for_member(M3, NOW)))) == []
