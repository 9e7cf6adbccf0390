"""Issue 13: a rolling upgrade of a 3-node cluster from etcd 3.4.23 to 3.5.30 on the
network-namespace bed, one node at a time (stop the controller, point it at the new binary,
start it), while a writer keeps writing: every acknowledged write is kept, there is one
cluster ID, `etcdward status` shows the mixed versions mid-way, and a node cannot go back.
"""
from __future__ import annotations

import json

import pytest

from tests.etcdbins import etcd_of
from tests.prereqs import needs

from .harness import World, tail, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow, needs("netbed", "etcdctl", "etcd-3.4.23", "etcd-3.5.30")]

OLD, NEW = "3.4.23", "3.5.30"


def use(h, version: str) -> None:  # type: ignore[no-untyped-def]
    h.extra_config = {"spec": {"storage": {"etcd": {"binary": etcd_of(version)}}}}


def member_versions(h) -> dict[str, str]:  # type: ignore[no-untyped-def]
    p = h.cli("status", "-o", "json")
    assert p.returncode in (0, 1), p.stderr  # 1: degraded, e.g. while a member restarts on its new etcd
    return json.loads(p.stdout)["memberVersions"]


def test_rolling_upgrade_3_4_to_3_5(world) -> None:  # type: ignore[no-untyped-def]
    w: World = world(3)
    hosts = [w[f"n{i}"] for i in (1, 2, 3)]
    for h in hosts:
        use(h, OLD)
    n1 = w.bootstrap("n1")
    token = n1.token()
    w.start_writer()
    for h in hosts[1:]:
        h.start(token)
    w.wait_voters(w.names(), timeout=180)
    wait_until(lambda: member_versions(n1) == {h.node: OLD for h in hosts}, 60, "every member on 3.4.23")
    cluster_ids = {h.status()["cluster_id"] for h in hosts}
    assert len(cluster_ids) == 1
    for i, h in enumerate(hosts):
        h.stop()
        use(h, NEW)
        h.start()
        wait_until(h.serves, 120, f"{h.node} serving on {NEW}", detail=lambda h=h: tail(h.log_file))
        want = {x.node: NEW if j <= i else OLD for j, x in enumerate(hosts)}
        wait_until(lambda: member_versions(h) == want, 60, f"status shows {want}",
                   detail=lambda h=h: str(member_versions(h)))
        w.event(f"{h.node} upgraded to {NEW}; status shows {want}")
        assert h.status()["version"] == NEW
    assert {h.status()["cluster_id"] for h in hosts} == cluster_ids
    # the cluster version moves to 3.5 once every member runs it; then no member may go back
    wait_until(lambda: json.loads(hosts[0].data.etcd_version_file.read_text()).get("cluster") == "3.5.0", 90,
               "cluster version 3.5.0 pinned on n1")
    n1.stop()
    use(n1, OLD)
    n1.write_config(n1.config())
    p = n1.cli("controller", "-c", str(n1.config_file), data_dir=True)
    assert p.returncode == 1 and "below this cluster's version 3.5" in p.stderr, p.stderr
    use(n1, NEW)
    n1.start()
    w.check_invariants(w.names(), timeout=180)
