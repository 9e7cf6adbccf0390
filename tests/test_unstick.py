"""Issue 13 part 3: a join never hangs on etcd#14523 (adds refused as `unhealthy cluster` on a
stale peer status although every voter is live): the serving controller restarts its etcd,
moving etcd leadership away first when it leads. The rule is pure (decide); step() runs it
against a real cluster with an injected refusal streak and a recorded restart."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import time

import pytest

from etcdward.etcdversions import Version
from etcdward.join.server import STREAK_GAP, AddRefusals, JoinBusy, JoinService
from etcdward.reconcile import unstick
from etcdward.reconcile.unstick import RECENT, STREAK, decide, step
from etcdward.store import Member
from tests.cluster import Cluster, Node, wait_for
from tests.etcdbins import version_of
from tests.test_leave import three

M1, M2, M3 = (Member(i, f"n{i}", (f"https://10.0.0.{i}:2380",), (), False) for i in (1, 2, 3))
UNSTARTED = Member(4, "", ("https://10.0.0.4:2380",), (), True)
ALL = frozenset({1, 2, 3})


@pytest.mark.parametrize("first, last, alive, members, leader, acts, moves", [
    (0.0, 19.0, ALL, [M1, M2, M3], 2, True, False),  # refused 20 s, all live, n2 leads: restart only
    (0.0, 19.0, ALL, [M1, M2, M3], 1, True, True),  # this member leads: move leadership away first
    (0.0, 19.0, frozenset({1, 2}), [M1, M2, M3], 2, False, False),  # n3 really down: etcd is right (#21640)
    (10.0, 19.0, ALL, [M1, M2, M3], 2, False, False),  # refused only 10 s
    (0.0, 10.0, ALL, [M1, M2, M3], 2, False, False),  # nobody asked for 10 s: the streak is over
    (None, 0.0, ALL, [M1, M2, M3], 2, False, False),
    (0.0, 19.0, frozenset({1}), [M1], 1, False, False),  # a single voter: nothing to do
    (0.0, 19.0, ALL, [M1, M2, M3, UNSTARTED], 2, True, False),  # a pending learner is no voter
])
def test_decide(first: float | None, last: float, alive: frozenset[int], members: list[Member], leader: int,
                acts: bool, moves: bool) -> None:
    u = decide(first, last, 20.0, members, alive, self_id=1, leader_id=leader)
    assert (u is not None) == acts, u
    if u is not None:
        assert (u.move_to is not None) == moves
        assert "etcd#14523" in u.message and f"all {sum(1 for m in members if not m.is_learner)} voters" in u.message
        assert u.move_to is None or u.move_to.id != 1


def test_streak() -> None:
    r = AddRefusals()
    r.note(True)
    first = r.first
    r.note(True)
    assert r.first == first
    r.last -= STREAK_GAP + 1  # a pause: the next refusal starts a new streak
    r.note(True)
    assert r.first != first
    r.note(False)
    assert r.first is None


def _refused_for(seconds: float) -> AddRefusals:
    r = AddRefusals()
    now = time.monotonic()
    r.first, r.last = now - seconds, now - 0.5
    return r


async def _step(n: Node, r: AddRefusals) -> tuple[unstick.Unstick | None, list[int]]:
    restarts: list[int] = []

    async def restart() -> None:
        restarts.append(1)

    async with n.store() as st:
        return await step(st, r, restart), restarts


def test_acts_on_a_real_cluster_only_while_every_voter_is_live(cluster: Cluster) -> None:
    n1, n2, n3 = three(cluster)
    wait_for(lambda: len(_alive(n1)) == 3, 30, "3 liveness keys", node=n1)
    assert {json.loads(v)["etcdVersion"] for v in _alive(n1).values()} == {version_of_etcd()}
    leader = next(n for n in (n1, n2, n3) if n.status().leader_id == n.status().member_id)
    u, restarts = asyncio.run(_step(leader, _refused_for(STREAK + 1)))
    assert u is not None and u.move_to is not None and restarts == [1], u
    wait_for(lambda: leader.status().leader_id != leader.status().member_id, 15, "leadership moved", node=leader)
    follower = next(n for n in (n1, n2, n3) if n.status().leader_id != n.status().member_id)
    u, restarts = asyncio.run(_step(follower, _refused_for(STREAK + 1)))
    assert u is not None and u.move_to is None and restarts == [1]
    u, restarts = asyncio.run(_step(follower, _refused_for(RECENT)))  # too short a streak
    assert u is None and restarts == []
    # a voter really down: adds are refused (before 3.5.30, etcd#21640) and nothing is restarted
    n3.stop()
    wait_for(lambda: len(_alive(n1)) == 2, 30, "n3's liveness key expired", node=n1)
    r = AddRefusals()

    async def add() -> None:
        async with n1.store() as st:
            with pytest.raises(JoinBusy):
                await JoinService(st, hold=3.0, refusals=r).join("n4", "https://127.77.250.1:2380")

    asyncio.run(add())
    if Version.parse(version_of_etcd()) < Version(3, 5, 30):
        assert r.first is not None  # the refusal was noted as `unhealthy cluster`
    u, restarts = asyncio.run(_step(n1, _refused_for(STREAK + 1)))
    assert u is None and restarts == []


def version_of_etcd() -> str:
    return version_of(os.environ.get("ETCDWARD_ETCD_BIN") or shutil.which("etcd") or "etcd") or ""


def _alive(n: Node) -> dict[str, str]:
    p = n.etcdctl("get", "--prefix", "/etcdward/alive/", "-w", "json")
    kvs = json.loads(p.stdout).get("kvs", [])
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode() for kv in kvs}


def test_the_check_sleeps_until_a_streak_could_be_due_and_a_stale_one_costs_no_round_trip() -> None:
    assert unstick.next_check(None, 100.0) == STREAK  # a streak starting now is due STREAK from now
    assert unstick.next_check(95.0, 100.0) == STREAK - 5
    assert unstick.next_check(80.0, 100.0) == unstick.CHECK

    class NoCalls:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"an etcd call ({name}) for a streak nobody continues")

    async def restart() -> None:
        raise AssertionError("restarted")

    r = AddRefusals()
    r.first = r.last = time.monotonic() - STREAK - RECENT - 1  # nobody has asked for a while
    assert asyncio.run(step(NoCalls(), r, restart)) is None  # type: ignore[arg-type]
