"""`etcdward status` against a real 3-node cluster: healthy (exit 0, every field), --watch and
Ctrl-C, a stopped controller (exit 1 naming it), its node's etcd gone (exit 2, one line).
One cluster for the module; the tests run in file order and the last one stops n3."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import yaml
from tests.cluster import Cluster, Node, wait_for
from tests.prereqs import needs
from tests.test_records_support import form_in_sync

pytestmark = needs("etcd")

ROW_FIELDS = {"name", "id", "role", "started", "healthy", "etcdLeader", "reconcilerLeader", "etcdVersion", "raftTerm",
              "raftIndex", "raftAppliedIndex", "dbSize", "dbSizeInUse", "dbQuota", "alarms", "progress",
              "lastReportSeconds", "peerURL"}


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory):
    cluster = Cluster(tmp_path_factory.mktemp("status"))
    try:
        nodes, _ = form_in_sync(cluster, ["n1", "n2", "n3"])
        yield nodes
    finally:
        cluster.teardown()


def status(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return node.cli("status", "--data-dir", str(node.data.root), *args, check=False)


def test_healthy_cluster_exits_0_with_every_field(three: list[Node]) -> None:
    n1, n2, n3 = three
    p = wait_for(lambda: (q := status(n2, "-o", "json")).returncode == 0 and q, 30, "status exit 0", node=n2)
    out = json.loads(p.stdout)
    assert out["verdict"] == "healthy" and out["reasons"] == [], out["reasons"]
    assert out["clusterID"] == format(n1.status().cluster_id, "x") and out["member"] == "n2"
    assert out["etcdLeader"] in {"n1", "n2", "n3"} and out["reconcilerLeader"] in {"n1", "n2", "n3"}
    assert out["etcdVersions"] and out["records"] == {"inSync": True, "count": 3, "differ": []}
    assert set(out["memberVersions"]) == {"n1", "n2", "n3"} and "lastSuccess" in out["backup"]
    rows = {m["name"]: m for m in out["members"]}
    assert set(rows) == {"n1", "n2", "n3"}
    for m in rows.values():
        assert set(m) == ROW_FIELDS
        assert m["role"] == "voter" and m["started"] and m["healthy"] and m["alarms"] == []
        assert m["raftTerm"] >= 1 and m["raftAppliedIndex"] > 0 and 0 < m["dbSizeInUse"] <= m["dbSize"]
        assert m["dbQuota"] == 2 * 1024**3 and 0 <= m["lastReportSeconds"] < 30
    assert sum(m["etcdLeader"] for m in rows.values()) == 1 and sum(m["reconcilerLeader"] for m in rows.values()) == 1
    y = status(n1, "-o", "yaml")
    assert y.returncode == 0 and yaml.safe_load(y.stdout)["members"][0]["name"] in rows
    t = status(n3)
    assert t.returncode == 0 and "MEMBER" in t.stdout and "status:           healthy" in t.stdout
    assert "lastFailure:  none" in t.stdout and "records:          in sync (3 records)" in t.stdout


def test_watch_prints_a_document_a_second_and_ctrl_c_exits_0(three: list[Node]) -> None:
    n1 = three[0]
    with subprocess.Popen([sys.executable, "-m", "etcdward", "status", "--watch", "-o", "json", "--data-dir",
                           str(n1.data.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None and p.stderr is not None
        docs = [json.loads(p.stdout.readline()) for _ in range(2)]  # one JSON document per line
        p.send_signal(signal.SIGINT)
        assert p.wait(15) == 0
        assert "Traceback" not in p.stderr.read()
    assert all(d["clusterID"] == docs[0]["clusterID"] for d in docs)


def test_stopped_controller_is_named_then_its_node_says_unreachable(three: list[Node]) -> None:
    n1, _, n3 = three
    assert n3.stop() == 0  # its liveness lease goes with it; etcd stops too
    p = wait_for(lambda: (q := status(n1, "-o", "json")).returncode == 1 and q, 30, "status exit 1", node=n1)
    reasons = json.loads(p.stdout)["reasons"]
    assert any(r.startswith("member n3 ") and "not reporting" in r for r in reasons), reasons
    row = next(m for m in json.loads(p.stdout)["members"] if m["name"] == "n3")
    assert row["healthy"] is False
    t = status(n1)
    assert t.returncode == 1 and "degraded:" in t.stdout and "member n3 " in t.stdout
    # n3's own etcd is down: exit 2, one line, no traceback
    gone = status(n3)
    lines = [line for line in gone.stderr.splitlines() if line.strip()]
    assert gone.returncode == 2 and len(lines) == 1 and lines[0].startswith("can't get status: "), gone.stderr
    assert gone.stdout == ""

