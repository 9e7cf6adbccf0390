"""etcd maintenance on a real 3-member cluster (issue 14 part 1): `etcd defrag` of this member and
of every member (the etcd leader last, after a leadership move), `etcd alarm list|disarm`, NOSPACE
recovery by the reconciler leader with a small quota, and the refusal while a member is down.

One cluster for the module; the tests run in file order and the last one stops a member."""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from etcdward import config as C
from etcdward.localstate import Identity
from etcdward.reconcile.maintain import Maintainer
from etcdward.voterdeps import VoterDeps
from etcdward.keys import ALIVE, DEFRAG_LOCK, MAINTENANCE_LAST
from etcdward.maintenance.remote import DEFRAG_PATH, client_ssl_context
from etcdward.store import errors as E
from tests.cluster import Cluster, Node, run_async, wait_for
from tests.join_helpers import shared_cluster
from tests.test_bad_input import assert_refused
from tests.test_monitoring import get as api_get
from tests.test_monitoring import sample

QUOTA = 16 * 2**20
CONFIG = {"spec": {"storage": {"etcd": {"quotaBackendBytes": QUOTA}}}}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    for c in shared_cluster(tmp_path_factory, "maintenance"):
        yield three(c)


def three(c: Cluster) -> list[Node]:
    n1 = c.bootstrap("n1", extra_config=CONFIG)
    token = n1.token()
    rest = [c.node("n2", extra_config=CONFIG), c.node("n3", extra_config=CONFIG)]
    for n in rest:
        n.start(token)
    c.wait_voters(n1, {"n1", "n2", "n3"}, timeout=120)
    # every controller publishes its API address and db figures in its liveness key
    wait_for(lambda: len([b for b in alive_bodies(n1) if "apiURL" in b and "dbSize" in (b.get("report") or {})]) == 3, 30,
             "3 liveness keys with figures", node=n1)
    return [n1, *rest]


def dd(n: Node) -> tuple[str, str]:
    return ("--data-dir", str(n.data.root))


def reports(n: Node) -> list[dict]:
    """Each live controller's published figures (memberreport.py)."""
    return [b.get("report") or {"dbSize": 0, "dbSizeInUse": 0} for b in alive_bodies(n)]


def alive_bodies(n: Node) -> list[dict]:
    async def go() -> list[dict]:
        async with n.store() as st:
            kvs, _ = await st.get_prefix(ALIVE)
            return [json.loads(kv.value) for kv in kvs]

    return run_async(go())


def get(n: Node, key: str) -> bytes | None:
    async def go() -> bytes | None:
        async with n.store() as st:
            kv = await st.get(key)
            return kv.value if kv else None

    return run_async(go())


def put(n: Node, key: str, value: str) -> None:
    async def go() -> None:
        async with n.store() as st:
            await st.put(key, value)

    run_async(go())


def delete(n: Node, key: str) -> None:
    async def go() -> None:
        async with n.store() as st:
            await st.delete(key)

    run_async(go())


def leader_name(n: Node) -> str:
    st = n.status()
    return next(m.name for m in n.members() if m.id == st.leader_id)


def test_etcd_runs_with_the_quota_and_periodic_compaction(nodes: list[Node]) -> None:
    argv = open(f"/proc/{nodes[0].etcd_pid()}/cmdline", "rb").read().split(b"\0")
    assert {f"--quota-backend-bytes={QUOTA}".encode(), b"--auto-compaction-mode=periodic",
            b"--auto-compaction-retention=5m"} <= set(argv)
    # status shows (and warns near) the quota etcd runs with, not etcd's default
    assert {r.get("dbQuota") for r in reports(nodes[0])} == {QUOTA}


def test_defrag_this_member(nodes: list[Node]) -> None:
    n2 = nodes[1]
    p = n2.cli("etcd", "defrag", *dd(n2))
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("defragmented n2 (id "), p.stdout
    last = json.loads(get(n2, MAINTENANCE_LAST) or b"{}")
    assert last["what"] == "defrag" and [m["name"] for m in last["members"]] == ["n2"]


def test_defrag_endpoint_wants_a_cluster_client_certificate_and_the_right_member(nodes: list[Node]) -> None:
    n1 = nodes[0]
    url = f"https://{n1.address}:9443{DEFRAG_PATH}"
    anonymous = ssl.create_default_context(cafile=str(n1.data.ca_crt))
    r = httpx.post(url, json={"memberID": "1"}, verify=anonymous)
    assert r.status_code == 401 and "client certificate" in r.text
    ctx = client_ssl_context(n1.data, "test")
    assert httpx.post(url, json={"memberID": "nothex"}, verify=ctx).status_code == 400
    r = httpx.post(url, json={"memberID": "1", "trigger": "cron"}, verify=ctx)
    assert r.status_code == 400 and r.text.startswith("trigger: must be one of manual, auto, nospace"), r.text
    r = httpx.post(url, json={"memberID": "1"}, verify=ctx)
    assert r.status_code == 409 and "not 1" in r.text


def test_defrag_all_followers_first_and_the_leader_last_after_moving_leadership(nodes: list[Node]) -> None:
    n1 = nodes[0]
    leader = leader_name(n1)
    p = n1.cli("etcd", "defrag", "--all", *dd(n1))
    lines = p.stdout.strip().splitlines()
    names = [re.match(r"defragmented (\S+) ", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert sorted(names) == ["n1", "n2", "n3"], p.stdout
    assert names[-1] == leader and "etcd leader, leadership moved to" in lines[-1], p.stdout
    assert all("follower" in line for line in lines[:-1]), p.stdout
    assert leader_name(n1) != leader  # it stayed moved


def test_nospace_alarm_list_disarm_and_automatic_recovery(nodes: list[Node]) -> None:
    n1, n2 = nodes[0], nodes[1]
    assert n1.cli("etcd", "alarm", "list", *dd(n1)).stdout.strip() == "no alarms"
    acked = {f"/test/acked/{i}": f"v{i}" for i in range(20)}

    async def fill(first: int) -> int:
        """1 MB puts until etcd refuses one with NOSPACE; the number of the refused one."""
        async with n2.store(timeout=10) as st:
            for i in range(first, 200):
                try:
                    await st.put(f"/test/fill/{i}", b"x" * 1_000_000)
                except E.NoSpace:
                    return i
        raise AssertionError("the quota was never reached")

    async def write_acked_then_fill() -> int:
        async with n2.store(timeout=10) as st:
            for k, v in acked.items():
                await st.put(k, v)
        return await fill(0)

    # A defrag "in progress" (its lock key) holds the leader's recovery back meanwhile
    put(n1, DEFRAG_LOCK, json.dumps({"holder": "test", "since": time.time()}))
    filled = run_async(write_acked_then_fill())
    assert filled > 0
    listed = json.loads(n1.cli("etcd", "alarm", "list", "-o", "json", *dd(n1)).stdout)["alarms"]
    assert listed and {a["alarm"] for a in listed} == {"NOSPACE"}, listed
    assert {a["name"] for a in listed} <= {"n1", "n2", "n3"}
    disarmed = json.loads(n1.cli("etcd", "alarm", "disarm", "-o", "json", *dd(n1)).stdout)["alarms"]
    assert {a["alarm"] for a in disarmed} == {"NOSPACE"}
    assert_refused(n1.cli("etcd", "defrag", *dd(n1), check=False), "another defrag is running (test, for ")
    # nothing was freed: the next write over the quota raises the alarm again
    filled = run_async(fill(filled))

    async def delete_fill_then_write() -> bool:
        async with n2.store(timeout=10) as st:
            for i in range(filled + 1):
                await st.delete(f"/test/fill/{i}")  # deletes are allowed under NOSPACE
            try:
                await st.put("/test/after", "ok")
                return True
            except E.NoSpace:
                return False

    assert not run_async(delete_fill_then_write())  # stuck until the alarm is disarmed
    delete(n1, DEFRAG_LOCK)  # from here on, no operator
    deleted = time.monotonic()
    wait_for(lambda: run_async(delete_fill_then_write()), 60, "a write accepted after NOSPACE", node=n1, interval=1)
    assert time.monotonic() - deleted < 60
    assert n1.cli("etcd", "alarm", "list", *dd(n1)).stdout.strip() == "no alarms"

    async def read_acked() -> dict[str, str]:
        async with n1.store() as st:
            return {k: (kv.value.decode() if (kv := await st.get(k)) else "") for k in acked}

    assert run_async(read_acked()) == acked  # nothing acknowledged was lost
    last = json.loads(get(n1, MAINTENANCE_LAST) or b"{}")
    assert last["what"] == "nospace-recovery" and "disarmed" in last["message"], last
    assert len(last["members"]) == 3


def test_automatic_defrag_of_fragmented_members_leader_last(nodes: list[Node]) -> None:
    """The reconciler leader's decision and action (reconcile/maintain.py) with a 1 MiB threshold,
    run in-process against the live cluster's published figures."""
    n1 = nodes[0]
    cfg = C.parse("spec: {maintenance: {defrag: {fragmentedRatio: 0.3, minFragmentedBytes: 1048576}}}")

    async def fragment() -> int:
        async with n1.store(timeout=10) as st:
            for i in range(4):
                await st.put(f"/test/frag/{i}", b"y" * 1_000_000)
            for i in range(4):
                await st.delete(f"/test/frag/{i}")
            rev = (await st.status()).revision
            await st.compact(rev)
            return rev

    run_async(fragment())
    wait_for(lambda: all(r["dbSize"] - r["dbSizeInUse"] >= 2**20 for r in reports(n1)), 30,
             "every member publishes >= 1 MiB free", node=n1)
    leader, me = leader_name(n1), format(n1.status().member_id, "x")

    async def auto() -> None:
        async with n1.store(timeout=10) as st:
            deps = VoterDeps(st, cfg, n1.data, Identity("n1", member_id=me))
            await Maintainer(deps).auto_defrag()

    run_async(auto())
    last = json.loads(get(n1, MAINTENANCE_LAST) or b"{}")
    assert last["what"] == "defrag" and last["message"].startswith("automatic defrag of"), last
    names = [m["name"] for m in last["members"]]
    assert sorted(names) == ["n1", "n2", "n3"] and names[-1] == leader, last
    assert all(m["after"]["dbSize"] < m["before"]["dbSize"] for m in last["members"]), last


def test_status_and_metrics_show_maintenance_and_certificates(nodes: list[Node]) -> None:
    n1 = nodes[0]
    put(n1, DEFRAG_LOCK, json.dumps({"holder": "test holder", "since": time.time() - 5}))
    try:
        out = json.loads(n1.cli("status", "-o", "json", *dd(n1), check=False).stdout)
    finally:
        delete(n1, DEFRAG_LOCK)
    last, running = out["maintenance"]["last"], out["maintenance"]["running"]
    assert last["what"] == "defrag" and last["by"] and last["when"].endswith("Z"), last  # the automatic one above
    assert {m["name"] for m in last["members"]} == {"n1", "n2", "n3"}
    assert running["holder"] == "test holder" and running["forSeconds"] >= 5
    certs = out["certificates"]
    assert {c["cert"] for c in certs["items"]} == {"ca", "etcd-ca", "api", "etcd-server", "etcd-peer", "etcd-client"}
    assert certs["earliestLeaf"]["remainingSeconds"] > 300 * 86400 and certs["earliestCA"]["path"].endswith("ca.crt")
    assert not [r for r in out["reasons"] if "certificate" in r], out["reasons"]
    table = n1.cli("status", *dd(n1), check=False).stdout
    assert "  last:         defrag at " in table and "  running:      none" in table, table
    assert "certificates:     earliest leaf pki/" in table, table
    # `etcd defrag --all` asked n2 and n3 through their controllers (manual); the reconciler
    # leader recovered from NOSPACE by defragmenting all three
    texts = [api_get(n, "/metrics").text for n in nodes]

    def total(name: str, **labels: str) -> float:
        return sum(sample(t, name, **labels) or 0 for t in texts)

    assert total("etcdward_defrag_operations_total", trigger="manual", outcome="success") >= 2
    assert total("etcdward_defrag_operations_total", trigger="nospace", outcome="success") >= 3
    assert total("etcdward_defrag_duration_seconds_count", trigger="nospace") >= 3
    assert total("etcdward_nospace_recoveries_total", outcome="recovered") >= 1
    assert total("etcdward_etcd_alarms", alarm="NOSPACE") == 0


def test_defrag_refused_naming_a_member_that_is_down(nodes: list[Node]) -> None:
    n1, n3 = nodes[0], nodes[2]
    n3.kill9()
    wait_for(lambda: len(alive_bodies(n1)) == 2, 30, "n3's liveness key expired", node=n1)
    assert_refused(n1.cli("etcd", "defrag", "--all", *dd(n1), check=False),
                   "refusing to defragment: member n3 (id ")
    # on the dead node itself: one line saying its etcd does not answer, for each command
    for args, needle in [(("etcd", "defrag"), "can't defragment: etcd of"),
                         (("etcd", "alarm", "list"), "can't list alarms: etcd of")]:
        assert_refused(n3.cli(*args, *dd(n3), check=False), needle)
