"""Scheduled backups (issue 10): spec.backup's keys, retention, the schedule on a real controller,
a backup dir that cannot be written (reported in status and metrics while the cluster keeps
working), and the backups before membership changes."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from etcdward import config as C
from etcdward.backup.archive import verify_file
from etcdward.backup.retention import archives, prune, to_delete
from etcdward.keys import BACKUP_BEFORE_CHANGE
from tests.cluster import Cluster, Node, next_address, wait_for
from tests.prereqs import needs
from tests.test_bad_input import assert_refused, etcdward


# -- config --------------------------------------------------------------------------------------
def test_backup_spec_defaults_and_round_trip() -> None:
    b = C.parse("").spec.backup
    assert (b.interval, b.dir, b.keep, b.before_membership_change, b.interval_seconds) == ("0", "", 24, False, 0)
    cfg = C.parse("spec: {backup: {interval: 1h30m, dir: /var/backups/etcd, keep: 3, beforeMembershipChange: true}}")
    assert cfg.spec.backup.interval_seconds == 5400
    assert C.parse(cfg.to_yaml()).spec.backup == cfg.spec.backup  # the effective config reads back
    assert C.parse("spec: {backup: {interval: 0}}").spec.backup.interval_seconds == 0


@pytest.mark.parametrize("text,needle", [
    ("interval: 5", "spec.backup.interval: 5 is not a duration"),
    ("interval: true", "spec.backup.interval"),
    ("interval: 0.5s", "shorter than the minimum of 1s"),
    ("interval: '-1h'", "spec.backup.interval"),
    ("interval: .nan", "spec.backup.interval"),
    ("interval: 1y", "spec.backup.interval"),
    ("keep: 0", "spec.backup.keep"),
    ("keep: '3'", "spec.backup.keep"),
    ("keep: 2.5", "spec.backup.keep"),
    ("dir: relative/path", "spec.backup.dir: 'relative/path' is not an absolute path"),
    ("dir: \"/a\\nb\"", "spec.backup.dir"),
    ("beforeMembershipChange: 1", "spec.backup.beforeMembershipChange"),
    ("everyday: true", "spec.backup.everyday: unknown key"),
])
def test_bad_backup_keys_are_refused_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"spec:\n  backup: {{{text}}}\n")
    assert_refused(etcdward("config", "validate", "-c", str(cfg)), needle)


# -- retention -----------------------------------------------------------------------------------
def names(n: int) -> list[str]:
    return [f"etcdward_backup_2024-01-01T00_00_{i:02d}Z.tar.gz" for i in range(n)]


def test_retention_keeps_the_newest_and_deletes_oldest_first() -> None:
    all_ = names(5)
    assert to_delete(all_, 2, {all_[4]: True}) == all_[:3]
    assert to_delete(all_, 5, {}) == [] and to_delete(all_, 9, {}) == []


def test_retention_never_deletes_the_newest_archive_that_verifies() -> None:
    all_ = names(5)
    # the two newest are broken: the newest good one (index 2) stays although keep is 2
    assert to_delete(all_, 2, {all_[4]: False, all_[3]: False, all_[2]: True}) == all_[:2]
    assert to_delete(all_, 1, {all_[4]: False, all_[3]: False, all_[2]: False, all_[1]: True}) == [all_[0], all_[2],
                                                                                                      all_[3]]


def test_prune_touches_only_archives_and_reads_only_what_it_must(tmp_path: Path) -> None:
    for n in names(4):
        (tmp_path / n).write_bytes(b"not an archive")
    others = ["notes.txt", ".etcdward_backup_x.tar.gz.123.tmp", "etcdward_backup_manual.tar", "backup.tar.gz"]
    for n in others:
        (tmp_path / n).write_text("mine")
    # the newest is known good (just written and verified): nothing is read, the 2 oldest go
    deleted = prune(tmp_path, 2, frozenset({names(4)[3]}))
    assert [p.name for p in deleted] == names(4)[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others + names(4)[2:])
    # none verifies: there is no good one to protect, keep the newest 1
    assert [p.name for p in prune(tmp_path, 1)] == [names(4)[2]]


# -- the schedule on a real controller -----------------------------------------------------------
def metrics(n: Node) -> dict[str, float]:
    text = httpx.get(f"https://{n.address}:9443/metrics", verify=False, trust_env=False, timeout=5).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(etcdward_backup_\w+) (\S+)$", text, re.M)}


def backup_status(n: Node) -> dict:
    p = n.cli("status", "-o", "json", "--data-dir", str(n.data.root), check=False)
    # 1: degraded, e.g. a member that just joined has not reported yet; the backup block is there
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)["backup"]


def test_scheduled_backups_keep_the_newest_two(cluster: Cluster, tmp_path: Path) -> None:
    dest = tmp_path / "backups"
    n1 = cluster.bootstrap("n1", extra_config={"spec": {"backup": {"interval": "2s", "keep": 2, "dir": str(dest)}}})
    seen: set[str] = set()

    def several() -> bool:
        seen.update(p.name for p in archives(dest) if dest.is_dir())
        return len(seen) >= 4
    wait_for(several, 60, "4 scheduled backups", node=n1, interval=0.3)
    time.sleep(0.5)
    kept = [p.name for p in archives(dest)]
    assert len(kept) == 2 and kept == sorted(seen)[-len(kept):], (kept, sorted(seen))
    for name in kept:
        assert verify_file(dest / name).member_name == "n1"
        assert (dest / name).stat().st_mode & 0o777 == 0o600
    b = backup_status(n1)
    assert b["lastSuccess"]["node"] == "n1" and b["lastSuccess"]["trigger"] == "scheduled"
    assert Path(b["lastSuccess"]["path"]).parent == dest and b["lastFailure"] is None
    assert b["interval"] == "2s" and b["keep"] == 2
    m = metrics(n1)
    assert m["etcdward_backup_last_success_timestamp_seconds"] > time.time() - 60
    assert m["etcdward_backup_duration_seconds"] > 0 and m["etcdward_backup_failures_total"] == 0
    table = n1.cli("status", "--data-dir", str(n1.data.root)).stdout
    assert "scheduled:    every 2s into" in table and "lastFailure:  none" in table


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A directory on a read-only tmpfs (root ignores file modes; a read-only mount stops it)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


@needs("root", "etcd")  # root: a read-only mount
def test_a_failing_backup_dir_is_reported_and_the_cluster_keeps_working(cluster: Cluster,
                                                                        read_only_dir: Path) -> None:
    spec = {"interval": "2s", "keep": 2, "dir": str(read_only_dir), "beforeMembershipChange": True}
    n1 = cluster.bootstrap("n1", extra_config={"spec": {"backup": spec}})
    wait_for(lambda: metrics(n1).get("etcdward_backup_failures_total", 0) >= 2, 30, "2 failed backups", node=n1)
    b = backup_status(n1)
    assert b["lastSuccess"] is None and b["lastFailure"]["node"] == "n1"
    assert "Read-only file system" in b["lastFailure"]["reason"], b
    assert "lastFailure:  " in (t := n1.cli("status", "--data-dir", str(n1.data.root)).stdout) and "Read-only" in t
    assert n1.etcdctl("put", "/still/works", "yes").returncode == 0
    # the reconciler still acts, and a join still goes through although its backup fails
    n2 = cluster.node("n2")
    n2.start(n1.token())
    cluster.wait_voters(n1, {"n1", "n2"}, timeout=90)
    assert "backup (before learner add of n2) failed" in n1.log()
    assert list(read_only_dir.iterdir()) == []


def test_backups_before_a_learner_add_and_a_member_removal(cluster: Cluster, tmp_path: Path) -> None:
    dest = tmp_path / "pre"
    n1 = cluster.bootstrap("n1", extra_config={"spec": {"backup": {"dir": str(dest), "beforeMembershipChange": True}}})
    n2 = cluster.node("n2", extra_config={"spec": {"backup": {"dir": str(dest), "beforeMembershipChange": True}}})
    n2.start(n1.token())
    cluster.wait_voters(n1, {"n1", "n2"}, timeout=90)
    first = archives(dest)
    assert len(first) == 1 and verify_file(first[0]).members[0]["name"] == "n1"  # taken before n2 was added
    assert backup_status(n1)["lastSuccess"]["trigger"] == "before learner add of n2"
    # the rate limit (one per 30 s, cluster-wide) is a key on a lease: expire it now
    assert n1.etcdctl("del", BACKUP_BEFORE_CHANGE).returncode == 0
    time.sleep(5.5)  # etcd refuses to remove a voter until all are connected >= 5 s
    n1.cli("patch", "etcdmember", "n2", "--leave", "--data-dir", str(n1.data.root))
    wait_for(lambda: {m.name for m in n1.members()} == {"n1"}, 60, "n2 removed", node=n1)
    assert n2.wait_exit(30) == 0
    b = backup_status(n1)["lastSuccess"]
    assert b["trigger"].startswith("before removal of member"), b
    second = [p for p in archives(dest) if p not in first]
    assert len(second) == 1 and {m["name"] for m in verify_file(second[0]).members} == {"n1", "n2"}


def test_etcd_leave_backs_up_first_and_refuses_when_that_fails(cluster: Cluster, tmp_path: Path) -> None:
    dest = tmp_path / "pre"
    n1 = cluster.bootstrap("n1", extra_config={"spec": {"backup": {"dir": str(dest), "beforeMembershipChange": True}}})

    def add_learner() -> str:  # an unstarted learner: removable at once, no second controller needed
        url = f"https://{next_address()}:2380"
        p = n1.etcdctl("member", "add", "x", f"--peer-urls={url}", "--learner")
        assert p.returncode == 0, p.stderr
        return url

    def leave(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return etcdward("etcd", "leave", "--peer-address", url.split("//")[1].split(":")[0],
                        "--data-dir", str(n1.data.root), *extra)

    first = add_learner()
    p = leave(first)
    assert p.returncode == 0, p.stderr
    [archive] = archives(dest)
    assert f"backup before the removal: {archive}" in p.stderr
    assert first in {u for m in verify_file(archive).members for u in m["peerURLs"]}  # taken before the removal
    assert first not in {m.peer_url for m in n1.members()}
    # the backup fails (its dir is a file now): refused, nothing removed; --force removes anyway
    assert n1.etcdctl("del", BACKUP_BEFORE_CHANGE).returncode == 0  # the 30 s rate limit
    archive.unlink()
    dest.rmdir()
    dest.write_text("not a directory")
    second = add_learner()
    assert_refused(leave(second), "the backup before it failed")
    assert second in {m.peer_url for m in n1.members()}
    p = leave(second, "--force")
    assert p.returncode == 0, p.stderr
    assert second not in {m.peer_url for m in n1.members()}
