"""Leave, refusal, reset and rejoin, the reconciler leader leaving, failover, `etcd leave`.

Mirrors k0s's `etcdmember` integration test (reference k0s.md §12) on loopback controllers."""

from __future__ import annotations

import json
import time

from tests.cluster import Cluster, Node, wait_for
from tests.test_records_support import LATENCY_BUDGET, in_sync, reconciler_leader, record_is, recs, timed_wait

REMOVED = dict(joined="False", reconcile_status="Success", message="Member removed from cluster")
ETCD_GATE = 5.5  # etcd refuses to remove an active voter until all are connected >= 5 s


def three(cluster: Cluster) -> list[Node]:
    n1 = cluster.bootstrap("n1")
    token = n1.token()
    rest = [cluster.node("n2"), cluster.node("n3")]
    for n in rest:
        n.start(token)
    cluster.wait_voters(n1, {"n1", "n2", "n3"}, timeout=120)
    wait_for(lambda: in_sync(n1, {"n1", "n2", "n3"}), 30, "3 records in sync", node=n1)
    return [n1, *rest]


def dd(node: Node) -> tuple[str, str]:
    return ("--data-dir", str(node.data.root))


def assert_left(node: Node, via: Node) -> None:
    assert node.wait_exit(30) == 0, node.log()[-2000:]
    assert node.data.tombstone.exists() and not node.data.etcd.exists()
    assert node.name not in {m.name for m in via.members()}


def test_leave_down_to_one_refuse_the_last_rejoin_and_the_leader_leaves(cluster: Cluster) -> None:
    n1, n2, n3 = three(cluster)
    token = n1.token()
    time.sleep(ETCD_GATE)

    # 3 -> 2 -> 1 via `patch --leave` on another node
    for node, left in ((n3, {"n1", "n2"}), (n2, {"n1"})):
        t0 = time.monotonic()  # includes the CLI's own start-up (~1 s)
        out = n1.cli("patch", "etcdmember", node.name, "--leave", *dd(n1)).stdout
        assert out.strip() == f"etcdmember.etcd.etcdward.io/{node.name} patched"
        took = timed_wait(record_is(n1, node.name, **REMOVED), 60, f"leave of {node.name} (patch CLI) acted on",
                          since=t0)
        assert took < LATENCY_BUDGET, f"leave of {node.name} took {took:.2f}s (target 2 s)"
        assert {m.name for m in n1.members()} == left
        assert_left(node, n1)
        assert "To rejoin: `etcdward reset" in node.log()
        assert recs(n1)[node.name].leave  # the request stays visible

    # the last voter cannot leave: the record says why, the member stays
    n1.cli("patch", "etcdmember", "n1", "--leave", *dd(n1))
    wait_for(record_is(n1, "n1", reconcile_status="Failed", joined="True"), 30, "refusal recorded", node=n1)
    assert "last voting member" in recs(n1)["n1"].message
    row = next(ln for ln in n1.cli("get", "etcdmembers", *dd(n1)).stdout.splitlines() if ln.startswith("n1 "))
    assert row.split()[-2:] == ["True", "Failed"]
    p = n1.cli("etcd", "leave", *dd(n1), check=False)
    assert p.returncode == 1 and "last voting member" in p.stderr
    assert {m.name for m in n1.members()} == {"n1"} and n1.alive()
    n1.cli("patch", "etcdmember", "n1", "--no-leave", *dd(n1))
    wait_for(record_is(n1, "n1", reconcile_status="", message="", leave=False), 30, "withdrawn leave cleared")

    # reset (no --force needed: the tombstone proves the node was removed) and rejoin 1 -> 2 -> 3
    for node, now in ((n2, {"n1", "n2"}), (n3, {"n1", "n2", "n3"})):
        out = node.cli("reset", *dd(node)).stdout
        assert "removed" in out and not node.data.tombstone.exists() and not node.data.pki.exists()
        node.start(token)
        cluster.wait_voters(n1, now, timeout=120)
        new_id = next(m.hex_id for m in n1.members() if m.name == node.name)
        want = dict(joined="True", leave=False, peer_address=node.address, member_id=new_id)
        wait_for(record_is(n1, node.name, **want), 30, f"{node.name} record re-bound", node=n1)
        assert node.stop() == 0  # and it stays right across a restart
        node.start()
        node.wait_ready(60)
        wait_for(lambda: {m.name for m in n1.members()} == now and record_is(n1, node.name, **want)(), 30,
                 f"{node.name} still right after a restart", node=n1)

    # the reconciler leader itself leaves: it hands the role over, another controller removes it
    time.sleep(ETCD_GATE)
    name = reconciler_leader(n1)
    leader = next(n for n in cluster.nodes if n.name == name)
    other = next(n for n in cluster.nodes if n is not leader)
    t0 = time.monotonic()
    other.cli("patch", "etcdmember", leader.name, "--leave", *dd(other))
    took = timed_wait(record_is(other, leader.name, **REMOVED), 60, "reconciler leader's own leave acted on",
                      since=t0)
    assert took < LATENCY_BUDGET + 2, f"leader leave took {took:.2f}s"
    assert_left(leader, other)
    rest = {n.name for n in cluster.nodes if n is not leader}
    assert {m.name for m in other.members()} == rest
    wait_for(lambda: reconciler_leader(other) in rest, 30, "a remaining controller leads")
    assert "resigned the reconciler leadership" in leader.log()


def test_failover_completes_a_pending_leave_and_etcd_leave(cluster: Cluster) -> None:
    nodes = three(cluster)
    time.sleep(ETCD_GATE)
    name = reconciler_leader(nodes[0])
    leader = next(n for n in nodes if n.name == name)
    a, b = (n for n in nodes if n is not leader)

    # kill -9 the reconciler leader, then ask for its removal while nobody leads
    t0 = time.monotonic()
    leader.kill9()
    a.cli("patch", "etcdmember", leader.name, "--leave", *dd(a))
    pending = recs(a)[leader.name].joined == "True"
    wait_for(record_is(a, leader.name, **REMOVED), 60, "pending leave completed after failover", node=a)
    took = time.monotonic() - t0
    print(f"measured: kill -9 of the reconciler leader -> its leave done: {took:.2f}s "
          f"(lease TTL 4 s; leave was pending: {pending})")
    assert took < 4 + 15
    assert reconciler_leader(a) in {a.name, b.name}
    assert {m.name for m in a.members()} == {a.name, b.name}

    # the removed node, restarted, learns it was removed: tombstone, exit 0, no rejoin
    leader.start()
    assert leader.wait_exit(60) == 0, leader.log()[-2000:]
    assert leader.data.tombstone.exists()
    assert "permanently removed" in json.loads(leader.data.tombstone.read_text())["reason"]

    # `etcd leave`: k0s flag semantics, then the node leaves itself (default peer address)
    for args, err in ((["x"], 'unknown command "x" for "leave"'),
                      (["--peer-address", f"https://{b.address}:2380"],
                       f'invalid argument "https://{b.address}:2380" for "--peer-address" flag: neither an IP '
                       "address nor a DNS name"),
                      (["--peer-address", "127.0.0.1"], "peer not found: https://127.0.0.1:2380")):
        p = b.cli("etcd", "leave", *args, *dd(b), check=False)
        assert p.returncode != 0 and p.stderr.strip().endswith(err), p.stderr
    out = b.cli("etcd", "leave", *dd(b)).stdout
    assert out.startswith("Successfully deleted peerID=")
    assert_left(b, a)
    wait_for(record_is(a, b.name, joined="False"), 30, "record of the node that left", node=a)
    p = a.cli("etcd", "leave", "--peer-address", a.address, *dd(a), check=False)
    assert p.returncode == 1 and "last voting member" in p.stderr
    assert {m.name for m in a.members()} == {a.name}

    # reset refuses while the controller runs, and (unless --force) while it may be a member
    assert a.proc
    p = a.cli("reset", *dd(a), check=False)
    assert p.returncode == 1 and f"is in use by etcdward controller (pid {a.proc.pid})" in p.stderr, p.stderr
    assert a.stop() == 0
    p = a.cli("reset", *dd(a), check=False)
    assert p.returncode == 1 and "may still be a member" in p.stderr and a.data.etcd_db.exists()
    a.cli("reset", "--force", *dd(a))
    assert not a.data.etcd.exists() and not a.data.state.exists() and not a.data.pki.exists()
    assert a.data.logs.exists()  # kept for the post-mortem


def test_peer_address_and_patch_validation() -> None:
    import pytest

    from etcdward.cli.admin_cmds import check_peer_address
    from etcdward.cli.common import CLIError
    from etcdward.cli.record_cmds import parse_patch

    assert check_peer_address("10.0.0.1") == "10.0.0.1"
    assert check_peer_address("fd00::1") == "fd00::1"
    assert check_peer_address("C1.Example.org") == "c1.example.org"
    for bad in ("https://10.0.0.1:2380", "10.0.0.1:2380", "", "a b"):
        with pytest.raises(CLIError, match=f'invalid argument "{bad}" for "--peer-address" flag: neither an IP '):
            check_peer_address(bad)
    assert parse_patch('{"spec":{"leave":true}}') is True
    assert parse_patch('{"spec":{"leave":false}}') is False
    for bad, field in (('{"status":{}}', '"status"'), ('{"spec":{"x":1}}', '"spec.x"'), ("[]", "top level"),
                       ('{"spec":{"leave":"yes"}}', "spec.leave must be true or false"), ("{", "not valid JSON")):
        with pytest.raises(CLIError, match=field):
            parse_patch(bad)


def test_the_quorum_guard_counts_only_lately_renewed_liveness_keys(cluster: Cluster) -> None:
    """A member cut off a moment ago keeps its liveness key for up to a whole lease TTL; the
    guard (alive_members(fresh=True)) stops counting it once its lease has missed half its TTL."""
    import asyncio

    from etcdward.keys import ALIVE
    from etcdward.membership import alive_members

    n1 = cluster.bootstrap("n1")

    async def go() -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
        async with n1.store() as st:
            lease = await st.grant_lease(4)
            await st.put(ALIVE + "abc", "{}", lease=lease)
            at_once = await alive_members(st, fresh=True)
            await asyncio.sleep(2.6)  # not renewed: more than half of its 4 s gone
            silent, all_live = await alive_members(st, fresh=True), await alive_members(st)
            await st.revoke_lease(lease)
            return at_once, silent, all_live

    at_once, silent, all_live = asyncio.run(go())
    assert 0xABC in at_once and 0xABC in all_live, (at_once, all_live)
    assert 0xABC not in silent, silent
    assert len(silent) >= 1  # n1's own controller renews its key every beat
