"""Maintenance decisions without etcd (maintenance/plan.py, figures.py) and the config keys
spec.storage.etcd.quotaBackendBytes and spec.maintenance (maintenancespec.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdward import config as C
from etcdward.maintenance import plan
from etcdward.store import Member
from etcdward.supervisor import LaunchPlan, etcd_args
from etcdward.paths import DataDir
from tests.test_bad_input import assert_refused, etcdward

MiB = 2**20


def member(i: int, name: str | None = None, learner: bool = False) -> Member:
    return Member(i, "" if name == "" else (name or f"n{i}"), (f"https://10.0.0.{i}:2380",), (), learner)


# -- candidates and order ------------------------------------------------------------------------
@pytest.mark.parametrize("size,used,due", [
    (400 * MiB, 100 * MiB, True),  # 75 % and 300 MiB free
    (200 * MiB, 100 * MiB, True),  # exactly 50 % and 100 MiB: both thresholds are inclusive
    (200 * MiB, 101 * MiB, False),  # under 50 %
    (150 * MiB, 10 * MiB, True),
    (100 * MiB, 10 * MiB, False),  # 90 % free but only 90 MiB
    (0, 0, False),
])
def test_needs_defrag(size: int, used: int, due: bool) -> None:
    assert plan.needs_defrag(plan.Figures(size, used), 0.5, 100 * MiB) is due


sizes = st.integers(0, 2**34)


@given(st.dictionaries(st.integers(1, 2**64 - 1), st.one_of(st.none(), st.tuples(sizes, sizes)), max_size=7),
       st.integers(0, 2**64 - 1), st.floats(0.01, 1.0), st.integers(0, 2**31))
def test_candidates_are_the_members_due_followers_first_leader_last(
        raw: dict[int, tuple[int, int] | None], leader: int, ratio: float, min_bytes: int) -> None:
    figures = {mid: plan.Figures(*f) if f else None for mid, f in raw.items()}
    got = plan.candidates(figures, leader, ratio, min_bytes)
    due = {mid for mid, f in figures.items() if f is not None and plan.needs_defrag(f, ratio, min_bytes)}
    assert set(got) == due and len(got) == len(due)  # each once, none without figures
    if leader in got:
        assert got[-1] == leader
    followers = [m for m in got if m != leader]
    assert followers == sorted(followers)


@given(st.sets(st.integers(1, 50)), st.integers(1, 50))
def test_defrag_order_puts_the_leader_last(ids: set[int], leader: int) -> None:
    order = plan.defrag_order(ids, leader)
    assert sorted(order) == sorted(ids)
    assert leader not in order[:-1]


# -- is it safe now ------------------------------------------------------------------------------
def test_cluster_blocker_names_the_member() -> None:
    healthy = [member(1), member(2), member(3)]
    assert plan.cluster_blocker(healthy, {1, 2, 3}, 0) is None
    assert "member n2 (id 2) is not live" in (plan.cluster_blocker(healthy, {1, 3}, 0) or "")
    assert "member n4 (id 4) is a learner" in (plan.cluster_blocker([*healthy, member(4, learner=True)],
                                                                    {1, 2, 3, 4}, 0) or "")
    unstarted = plan.cluster_blocker([*healthy, member(5, name="", learner=True)], {1, 2, 3}, 0) or ""
    assert "(unstarted) (id 5) at https://10.0.0.5:2380 has not started" in unstarted
    assert "a join is in progress (1 request(s) queued)" == plan.cluster_blocker(healthy, {1, 2, 3}, 1)


def test_figures_are_read_from_the_liveness_report() -> None:
    # the figures ride in the liveness key's "report" (memberreport.py; its publishing rule is
    # tested in test_clusterview.py)
    assert plan.Figures.parse({"dbSize": 10 * MiB, "dbSizeInUse": 5 * MiB}) is not None
    assert plan.Figures.parse({"dbSize": True, "dbSizeInUse": 1}) is None


# -- config --------------------------------------------------------------------------------------
def test_maintenance_defaults_and_the_etcd_flags(tmp_path: Path) -> None:
    cfg = C.parse("spec: {storage: {etcd: {peerAddress: 10.0.0.1}}}")
    m = cfg.spec.maintenance
    assert (m.auto_compaction.enabled, m.auto_compaction.retention) == (True, "5m")
    assert (m.defrag.auto, m.defrag.fragmented_ratio, m.defrag.min_fragmented_bytes, m.defrag.window) == (
        True, 0.5, 104857600, "")
    args = etcd_args(cfg, DataDir(tmp_path), LaunchPlan("n1"))
    assert "--auto-compaction-mode=periodic" in args and "--auto-compaction-retention=5m" in args
    assert not any(a.startswith("--quota-backend-bytes") for a in args)  # etcd's default
    cfg = C.parse("spec: {storage: {etcd: {peerAddress: 10.0.0.1, quotaBackendBytes: 8589934592}},"
                  " maintenance: {autoCompaction: {enabled: false}}}")
    args = etcd_args(cfg, DataDir(tmp_path), LaunchPlan("n1"))
    assert "--quota-backend-bytes=8589934592" in args and not any("compaction" in a for a in args)
    assert C.parse(cfg.to_yaml()) == cfg  # the effective config reads back
    assert C.parse("spec: {maintenance: {autoCompaction: {retention: 1d}}}").spec.maintenance.etcd_args()[
        "auto-compaction-retention"] == "24h"  # Go has no "d"


@pytest.mark.parametrize("window,now,inside", [
    ("02:00-04:00", "03:59", True), ("02:00-04:00", "04:00", False), ("02:00-04:00", "01:59", False),
    ("23:00-01:00", "23:30", True), ("23:00-01:00", "00:59", True), ("23:00-01:00", "12:00", False),
    ("", "12:00", True),
])
def test_defrag_window_in_utc(window: str, now: str, inside: bool) -> None:
    spec = C.parse(f"spec: {{maintenance: {{defrag: {{window: '{window}'}}}}}}").spec.maintenance.defrag
    h, m = map(int, now.split(":"))
    assert spec.allows(dt.datetime(2024, 1, 1, h, m, tzinfo=dt.timezone.utc)) is inside
    # the same instant in another zone
    cet = dt.timezone(dt.timedelta(hours=1))
    assert spec.allows(dt.datetime(2024, 1, 1, h, m, tzinfo=dt.timezone.utc).astimezone(cet)) is inside


@pytest.mark.parametrize("text,needle", [
    ("storage: {etcd: {quotaBackendBytes: 1000}}", "spec.storage.etcd.quotaBackendBytes: 1000 is not 0"),
    ("storage: {etcd: {quotaBackendBytes: 9000000000}}", "spec.storage.etcd.quotaBackendBytes"),
    ("storage: {etcd: {quotaBackendBytes: '16Mi'}}", "spec.storage.etcd.quotaBackendBytes"),
    ("storage: {etcd: {quotaBackendBytes: true}}", "spec.storage.etcd.quotaBackendBytes"),
    ("storage: {etcd: {extraArgs: {quota-backend-bytes: '1'}}}",
     "'quota-backend-bytes' is set by spec.storage.etcd.quotaBackendBytes"),
    ("storage: {etcd: {extraArgs: {auto-compaction-retention: 1h}}}", "spec.maintenance.autoCompaction.retention"),
    ("maintenance: {autoCompaction: {retention: 30s}}", "spec.maintenance.autoCompaction.retention: '30s' is shorter"),
    ("maintenance: {autoCompaction: {retention: 90.5s}}", "spec.maintenance.autoCompaction.retention"),
    ("maintenance: {autoCompaction: {enabled: 'yes'}}", "spec.maintenance.autoCompaction.enabled"),
    ("maintenance: {autoCompaction: {mode: revision}}", "spec.maintenance.autoCompaction.mode: unknown key"),
    ("maintenance: {defrag: {fragmentedRatio: 0}}", "spec.maintenance.defrag.fragmentedRatio"),
    ("maintenance: {defrag: {fragmentedRatio: 1.5}}", "spec.maintenance.defrag.fragmentedRatio"),
    ("maintenance: {defrag: {fragmentedRatio: .nan}}", "spec.maintenance.defrag.fragmentedRatio"),
    ("maintenance: {defrag: {minFragmentedBytes: -1}}", "spec.maintenance.defrag.minFragmentedBytes"),
    ("maintenance: {defrag: {minFragmentedBytes: 1.5}}", "spec.maintenance.defrag.minFragmentedBytes"),
    ("maintenance: {defrag: {auto: 1}}", "spec.maintenance.defrag.auto"),
    ("maintenance: {defrag: {window: '2-4'}}", "spec.maintenance.defrag.window: '2-4' is not a daily UTC window"),
    ("maintenance: {defrag: {window: '02:00-02:00'}}", "spec.maintenance.defrag.window: '02:00-02:00' is an empty"),
    ("maintenance: {defrag: {schedule: daily}}", "spec.maintenance.defrag.schedule: unknown key"),
    ("maintenance: {defrag: null}", "spec.maintenance.defrag: should be a mapping of keys, not null"),
    ("maintenance: 5", "spec.maintenance: should be a mapping of keys, not a number"),
    ("pki: [1]", "spec.pki: should be a mapping of keys, not a list"),
])
def test_bad_maintenance_keys_are_refused_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"spec: {{{text}}}\n")
    with pytest.raises(C.ConfigError) as e:
        C.load(cfg)
    assert needle in str(e.value)


def test_a_bad_key_is_one_line_from_the_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("spec: {maintenance: {defrag: {fragmentedRatio: 2}}}\n")
    assert_refused(etcdward("config", "validate", "-c", str(cfg)), "spec.maintenance.defrag.fragmentedRatio")


@given(st.integers(0, 2**34), st.integers(0, 2**34))
def test_nospace_is_disarmed_only_with_headroom(largest: int, quota: int) -> None:
    # just under the quota, the next few writes would raise the alarm again: keep 10 % free
    assert plan.can_disarm(largest, quota) == (quota > 0 and largest <= 0.9 * quota)
    if plan.can_disarm(largest, quota):
        assert largest < quota
