"""Crash safety of the join (issue 3, "each a test"), against real etcd.

The joiner kills itself with SIGKILL at an exact step (ETCDWARD_TEST_CRASH_AT, see
etcdward.crashpoints); its etcd dies with it. Restarting it with the same token must give
exactly one member for that node, one cluster ID everywhere, all voters. While no etcd db
exists, a restart WITHOUT the token must refuse instead of bootstrapping a second cluster
(k0s #5149). Killing the controller that serves the join API mid-request must not stop the
joiners from converging.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.cluster import Cluster, Node, wait_for
from tests.join_helpers import cluster_ids, etcd_members, wait_dead

# (crash point, what etcd holds for the joiner after the crash)
CRASH_POINTS = [
    ("join-before-post", "nothing"),
    ("join-after-add", "unstarted learner"),
    ("join-after-etcd-start", "started member"),
    ("join-after-promotion", "voter"),
]


def members_for(node: Node, via: Node) -> list[dict]:
    return [m for m in etcd_members(via) if node.peer_url in m["peerURLs"] or m["name"] == node.name]


@pytest.mark.parametrize("point, left_behind", CRASH_POINTS, ids=[p for p, _ in CRASH_POINTS])
def test_joiner_killed_at_crash_point_rejoins_with_same_token(cluster: Cluster, point: str, left_behind: str) -> None:
    n1 = cluster.bootstrap("n1")
    token_file = cluster.root / "n2.token"
    tok = n1.token()
    token_file.write_text(tok + "\n")
    n2 = cluster.node("n2", env={"ETCDWARD_TEST_CRASH_AT": point})
    n2.start(token_file=token_file)
    assert wait_dead(n2, 60) == -9, n2.log()[-3000:]  # wait_dead also waits for its etcd to be gone

    mine = members_for(n2, n1)
    if left_behind == "nothing":
        assert mine == []
    elif left_behind == "unstarted learner":
        assert len(mine) == 1 and mine[0]["isLearner"] and mine[0]["name"] == "", mine
    elif left_behind == "started member":
        assert len(mine) == 1 and mine[0]["name"] == "n2", mine
    else:
        assert len(mine) == 1 and not mine[0]["isLearner"] and mine[0]["name"] == "n2", mine
    n2.env = {}

    if not n2.data.etcd_db.exists():
        # The token file is gone (k0sctl #256) and the node restarts without a token: it was
        # given a token once, so it must refuse rather than bootstrap a second cluster.
        token_file.unlink()
        before = etcd_members(n1)
        n2.start()
        try:
            rc = n2.wait_exit(30)
        except subprocess.TimeoutExpired:
            other = n2.status().cluster_id if n2.is_ready() else None
            pytest.fail(f"restart without token kept running (cluster {other}, joined "
                        f"{n1.status().cluster_id}): it bootstrapped instead of refusing")
        out = n2.log().split("=== start")[-1]
        assert rc != 0, out
        assert "cluster" in out and "reset" in out, out
        assert not n2.data.etcd_db.exists() and n2.etcd_pid() is None
        assert etcd_members(n1) == before
        token_file.write_text(tok + "\n")  # the same token again

    n2.start(token_file=token_file)
    cluster.wait_voters(n1, {"n1", "n2"}, 90)
    n2.wait_ready(30)
    mine = members_for(n2, n1)
    assert len(mine) == 1 and mine[0]["name"] == "n2" and mine[0]["peerURLs"] == (n2.peer_url,), mine
    assert all(not m["isLearner"] for m in etcd_members(n1))
    assert etcd_members(n1) == etcd_members(n2)
    ids = cluster_ids([n1, n2])
    assert len(ids) == 1
    cid = format(ids.pop(), "x")
    # the controller pins the cluster ID (and drops join.json) once its etcd is ready
    def pinned() -> bool:
        ident = json.loads(n2.data.identity_file.read_text())
        return ident.get("clusterID") == cid and ident.get("name") == "n2"

    wait_for(pinned, 15, "cluster ID pinned", node=n2)
    wait_for(lambda: not n2.data.join_file.exists(), 10, "join.json removed once a voter", node=n2)


def test_killing_the_serving_controller_mid_join_converges(cluster: Cluster) -> None:
    """3 voters; the token points at n1; two joiners wait on n1 (one learner at a time) when
    n1 is killed -9. They retry, n1 comes back, and all five become voters of one cluster."""
    n1 = cluster.bootstrap("n1")
    tok = n1.token()
    n2, n3 = cluster.node("n2"), cluster.node("n3")
    for n in (n2, n3):
        n.start(tok)
    cluster.wait_voters(n1, {"n1", "n2", "n3"}, 90)

    n4, n5 = cluster.node("n4"), cluster.node("n5")
    for n in (n4, n5):
        n.start(tok)
    # kill n1 as soon as the first learner is added: the other joiner is then held in n1's queue
    wait_for(lambda: len(n2.members()) > 3, 30, "a learner", node=n4, interval=0.05)
    n1.kill9()
    time.sleep(3)  # the joiners' requests to n1 fail meanwhile
    assert n4.alive() and n5.alive(), "a joiner gave up instead of retrying"
    n1.start()
    cluster.wait_voters(n2, {f"n{i}" for i in range(1, 6)}, 120)
    for n in cluster.nodes:
        n.wait_ready(30)
    assert len(cluster_ids(cluster.nodes)) == 1
    names = [m["name"] for m in etcd_members(n2)]
    assert sorted(names) == [f"n{i}" for i in range(1, 6)]
