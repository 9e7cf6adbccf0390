"""The reconciler against real etcd: seed 2 (hostname flips), duplicates, changes behind its back,
and the record CLI. Several controllers on loopback (tests/cluster.py)."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from tests.cluster import Cluster, wait_for
from tests.prereqs import needs
from tests.test_records_support import (LATENCY_BUDGET, form_in_sync, in_sync, inject_duplicate, put_raw, record_is,
                                        recs, timed_wait)

from etcdward import records


def uts(hostname: str) -> list[str]:
    """Run the controller in its own UTS namespace with this hostname (root only)."""
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname]


@pytest.mark.root
@needs("root", "unshare")
def test_seed2_hostname_flips_keep_one_record_per_member(cluster: Cluster) -> None:
    """k0s #5369: a node whose hostname flips between c1 and c1.example.org got a second record
    with the same member ID. Here names are pinned and duplicates are deleted."""
    (c1, c2, c3), _ = form_in_sync(cluster, ["c1", "c2", "c3"],
                                   node_kw=lambda n: {"wrapper": uts(n), "use_name": False})
    names = {"c1", "c2", "c3"}
    ids = {m.name: m.id for m in c1.members()}

    for host in ("c1.example.org", "c1", "c1.example.org", "c1"):
        assert c1.stop() == 0
        c1.wrapper = uts(host)
        c1.start()
        c1.wait_ready(60)
        wait_for(lambda: in_sync(c2, names), 30, f"records in sync after restart as {host}", node=c2)
        assert {m.name: m.id for m in c2.members()} == ids  # same members, same IDs, stable names
    assert "c1.example.org" in c1.log()  # the flip really happened (it shows in the certificate SANs)

    # What k0s would have created on the flip: a second record with the live member ID. It even
    # asks to leave, which must never be honoured on a non-canonical duplicate.
    t0 = time.monotonic()
    assert inject_duplicate(c2, c1, format(ids["c1"], "x"), leave=True, now=0) == "c1.example.org"
    took = timed_wait(lambda: "c1.example.org" not in recs(c2), 30, "hand-written duplicate deleted", since=t0)
    assert took < LATENCY_BUDGET, f"duplicate deleted after {took:.2f}s (target 2 s)"
    assert record_is(c2, "c1", joined="True", leave=False, member_id=format(ids["c1"], "x"))()
    assert {m.name for m in c2.members()} == names
    line = next(ln for n in cluster.nodes for ln in n.log().splitlines() if "deleted duplicate record" in ln)
    assert "c1.example.org" in line and "record c1 is the canonical one" in line
    assert in_sync(c3, names)


def test_records_follow_changes_behind_the_reconcilers_back(cluster: Cluster) -> None:
    (n1, n2, n3), _ = form_in_sync(cluster, ["n1", "n2", "n3"])
    dd = ("--data-dir", str(n1.data.root))

    # -- the CLI reads ------------------------------------------------------------------------
    out = n1.cli("get", "etcdmembers", *dd).stdout.splitlines()
    assert out[0].split() == ["NAME", "PEER", "ADDRESS", "MEMBER", "ID", "JOINED", "RECONCILE", "STATUS"]
    rows = {ln.split()[0]: ln.split() for ln in out[1:]}
    ids = {m.name: m.hex_id for m in n1.members()}
    for node in cluster.nodes:
        assert rows[node.name][:4] == [node.name, node.address, ids[node.name], "True"]
    listing = json.loads(n1.cli("get", "etcdmembers", "-o", "json", *dd).stdout)
    assert (listing["apiVersion"], listing["kind"]) == ("etcd.etcdward.io/v1beta1", "EtcdMemberList")
    assert [i["metadata"]["name"] for i in listing["items"]] == ["n1", "n2", "n3"]
    one = json.loads(n1.cli("get", "etcdmember", "n2", "-o", "json", *dd).stdout)
    assert one["kind"] == "EtcdMember" and one["status"]["memberID"] == ids["n2"]
    assert int(one["metadata"]["resourceVersion"]) > 0 and one["spec"] == {"leave": False}
    assert yaml.safe_load(n1.cli("get", "etcdmember", "n2", "-o", "yaml", *dd).stdout) == one
    wide = n1.cli("get", "etcdmembers", "-o", "wide", *dd).stdout.splitlines()[0].split()
    assert wide[-3:] == ["LEAVE", "MESSAGE", "AGE"]
    p = n1.cli("get", "etcdmember", "nope", *dd, check=False)
    assert p.returncode == 1 and 'etcdmembers.etcd.etcdward.io "nope" not found' in p.stderr and not p.stdout
    p = n1.cli("patch", "etcdmember", "n2", "-p", '{"status":{"memberID":"1"}}', *dd, check=False)
    assert p.returncode == 1 and '"status"' in p.stderr
    assert not recs(n1)["n2"].leave  # bad input: no change

    # -- etcdctl member remove behind the reconciler's back -----------------------------------
    for _ in range(40):  # etcd refuses to remove an active voter until all are connected >= 5 s
        t0 = time.monotonic()
        p = n1.etcdctl("member", "remove", ids["n3"])
        if "unhealthy cluster" not in p.stderr:
            break
        time.sleep(0.5)
    assert p.returncode == 0, p.stderr
    took = timed_wait(record_is(n1, "n3", joined="False", message="No such member ID", reconcile_status="Success"),
                      30, "etcdctl member remove reflected (n3 Joined=False)", since=t0)
    assert took < LATENCY_BUDGET, f"member remove reflected after {took:.2f}s (target 2 s)"
    assert "n3" in recs(n1)  # kept for tracking until deleted
    assert n3.wait_exit(30) == 0  # the removed node noticed, stopped and wrote its tombstone
    tomb = json.loads(n3.data.tombstone.read_text())
    assert tomb["memberID"] == ids["n3"] and tomb["etcdDataMovedTo"]
    assert not n3.data.etcd.exists()
    assert "etcdward reset" in n3.log()
    n3.start()  # does not rejoin or bootstrap while the tombstone is there
    assert n3.wait_exit(30) != 0
    assert "removed from its etcd cluster" in n3.log().splitlines()[-1]

    # -- deletes ------------------------------------------------------------------------------
    n1.cli("delete", "etcdmember", "n3", *dd)
    assert "n3" not in recs(n1)
    uid = recs(n1)["n2"].uid
    assert 'etcdmember.etcd.etcdward.io "n2" deleted' in n1.cli("delete", "etcdmember", "n2", *dd).stdout
    timed_wait(lambda: "n2" in recs(n1) and recs(n1)["n2"].uid != uid, 30, "deleted record of a live member re-created")
    assert record_is(n1, "n2", joined="True", member_id=ids["n2"])()
    p = n1.cli("delete", "etcdmember", "n3", *dd, check=False)
    assert p.returncode == 1 and "not found" in p.stderr

    # -- an invalid record is reported, skipped, never overwritten ----------------------------
    put_raw(n1, records.key("junk"), "{not json")
    p = n1.cli("get", "etcdmembers", *dd)
    assert "junk" in p.stderr and "n1" in p.stdout
    wait_for(lambda: "invalid record /etcdward/etcdmembers/junk" in n1.log() + n2.log(), 10, "invalid record noted")

    # -- the CLI needs a reachable etcd: stopping the controller stops its etcd ----------------
    assert n2.stop() == 0
    p = n2.cli("get", "etcdmembers", "--data-dir", str(n2.data.root), check=False)
    assert p.returncode == 1 and "not reachable" in p.stderr
