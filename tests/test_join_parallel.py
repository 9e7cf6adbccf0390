"""Parallel learner joins against real etcd: one token, N controllers at once."""

from __future__ import annotations

import pytest

from tests.cluster import Cluster, wait_for


@pytest.mark.parametrize("n", [3, 5])
def test_parallel_join(cluster: Cluster, n: int) -> None:
    n1 = cluster.bootstrap("n1")
    token = n1.token()
    joiners = [cluster.node(f"n{i}") for i in range(2, n + 1)]
    for j in joiners:
        j.start(token)
    names = {f"n{i}" for i in range(1, n + 1)}
    cluster.wait_voters(n1, names, timeout=30 + 10 * n)
    for j in joiners:
        j.wait_ready(30)
    # one cluster ID everywhere, same member list everywhere
    ids = {node.status().cluster_id for node in cluster.nodes}
    assert len(ids) == 1
    views = {tuple(sorted((m.id, m.name) for m in node.members())) for node in cluster.nodes}
    assert len(views) == 1
    # every promotion is logged as one decision line by exactly one reconciler
    promoted = [line for node in cluster.nodes for line in node.log().splitlines() if "promoted learner" in line]
    assert len(promoted) == n - 1, promoted
    # restarting a joined node works without the token (k0s hacontrolplane)
    j = joiners[0]
    assert j.stop() == 0
    j.start()
    j.wait_ready(30)
    assert {m.name for m in n1.members()} == names
    wait_for(lambda: not (j.data.join_file.exists()), 5, "join.json removed")
