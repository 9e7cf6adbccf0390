"""Quorum-loss recovery (issue 10): 2 of 3 controllers gone for good -> `recover --yes` on the
survivor -> fresh nodes join; refused while the peers still run; a removed member that comes
back with its old data is fenced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from etcdward.backup.archive import verify_file
from tests.cluster import Cluster, next_address, wait_for
from tests.test_bad_input import assert_refused, etcdward
from tests.test_restore import records_match_members


def test_recover_after_losing_two_of_three(cluster: Cluster, tmp_path: Path) -> None:
    n1 = cluster.bootstrap("n1")
    token = n1.token()
    n2, n3 = cluster.node("n2"), cluster.node("n3")
    n2.start(token)
    n3.start(token)
    cluster.wait_voters(n1, {"n1", "n2", "n3"})
    acked = [f"/data/{i:03}" for i in range(40) if n1.etcdctl("put", f"/data/{i:03}", "v").returncode == 0]
    assert len(acked) == 40
    old_id = format(n1.status().cluster_id, "x")

    # n1 stopped, n2 and n3 still run: they make a quorum without it -> refused, says who answered
    assert n1.stop() == 0
    p = etcdward("recover", "--yes", "--data-dir", str(n1.data.root), timeout=120)
    assert_refused(p, "refusing to recover")
    assert "n2" in p.stderr and "n3" in p.stderr and "split the brain" in p.stderr
    assert not (n1.data.root / "backups").exists()

    # n2 and n3 die; n3's disk is kept aside (it comes back later), then both data dirs are lost
    n2.kill9()
    n3.kill9()
    shutil.copytree(n3.data.root, tmp_path / "n3-old", symlinks=True)
    shutil.rmtree(n2.data.root)
    shutil.rmtree(n3.data.root)

    p = etcdward("recover", "--data-dir", str(n1.data.root))  # no tty, no --yes
    assert_refused(p, "add --yes")
    p = etcdward("recover", "--yes", "--data-dir", str(n1.data.root), timeout=180)
    assert p.returncode == 0, p.stderr
    assert "recovered: n1" in p.stdout
    archives = list((n1.data.root / "backups").glob("etcdward_backup_*.tar.gz"))
    assert len(archives) == 1 and verify_file(archives[0]).cluster_id == old_id

    n1.start()
    n1.wait_ready(60)
    assert [m.name for m in n1.members()] == ["n1"]
    assert format(n1.status().cluster_id, "x") == old_id
    assert n1.etcdctl("get", "/data/", "--prefix", "--keys-only").stdout.split() == acked

    fresh = Cluster(tmp_path / "fresh")
    (tmp_path / "fresh").mkdir()
    try:
        f2, f3 = fresh.node("n2"), fresh.node("n3")
        tok = n1.token()
        f2.start(tok)
        f3.start(tok)
        cluster.wait_voters(n1, {"n1", "n2", "n3"})
        wait_for(lambda: records_match_members(n1), 60, "records == members", node=n1)

        # the old n3 comes back with its old data on its old address: etcd says it was removed
        shutil.copytree(tmp_path / "n3-old", n3.data.root, symlinks=True)
        n3.start()
        assert n3.wait_exit(60) == 0, n3.log()[-3000:]
        tomb = json.loads(n3.data.tombstone.read_text())
        assert "removed" in tomb["reason"]
        assert_refused(etcdward("status", "--data-dir", str(n3.data.root)), "fenced")
        assert cluster.voters(n1) == {"n1", "n2", "n3"} and len(n1.members()) == 3
        assert n1.etcdctl("get", "/data/", "--prefix", "--keys-only").stdout.split() == acked
    finally:
        fresh.teardown()


def test_no_other_member_answers_the_node_says_so_and_keeps_waiting(cluster: Cluster) -> None:
    """Every peer gone (or restored elsewhere, or cut off): no evidence either way, so no
    tombstone; within 60 s the log and `status` say that no peer answers and what to do."""
    n1 = cluster.bootstrap("n1")
    ghost = f"https://{next_address()}:2380"  # nothing listens there: quorum is now 2 of 2 voters
    p = n1.etcdctl("member", "add", "ghost", f"--peer-urls={ghost}")
    assert p.returncode == 0, p.stderr
    n1.stop()
    n1.start()
    wait_for(lambda: "no other member of this node's etcd cluster" in n1.log(), 60, "the no-quorum notice", node=n1)
    assert ghost in n1.log() and f"etcdward reset --force --data-dir {n1.data.root}" in n1.log()
    s = etcdward("status", "--data-dir", str(n1.data.root), timeout=60)
    assert "waiting: no other member of this node's etcd cluster" in s.stderr and "join token" in s.stderr, s
    assert n1.proc is not None and n1.proc.poll() is None  # still waiting, not fenced
    assert not n1.data.tombstone.exists() and n1.data.etcd_db.exists()
