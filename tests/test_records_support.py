"""Helpers for the record / reconcile / leave integration tests and bench/reconcile.py (no tests
here). Reads go straight to a node's etcd through etcdward.store; the operations under test go
through the `etcdward` CLI."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from tests.cluster import Cluster, Node, run_async, wait_for

from etcdward import records
from etcdward.keys import RECONCILER_LEADER as ELECTION_KEY

# The latency target is 2 s; this machine is shared and has 2 cores, so the hard
# assertions allow this much and every test prints what it measured.
LATENCY_BUDGET = float(os.environ.get("ETCDWARD_LATENCY_BUDGET", "5.0"))


def recs(node: Node) -> dict[str, records.EtcdMember]:
    async def go() -> dict[str, records.EtcdMember]:
        async with node.store() as st:
            return {r.name: r for r in (await records.list_records(st)).records}

    return run_async(go())


def put_raw(node: Node, key: str, value: str) -> None:
    async def go() -> None:
        async with node.store() as st:
            await st.put(key, value)

    run_async(go())


def inject_duplicate(via: Node, target: Node, member_id: str, *, leave: bool = False,
                     now: float | None = None) -> str:
    """Write by hand what k0s writes when target's hostname flips to its FQDN: a second record,
    <name>.example.org, with target's live member ID (k0s #5369); `leave` makes it also ask to
    leave, which must never be honoured on a non-canonical duplicate. Returns its name."""
    dup = records.new(f"{target.name}.example.org", target.address, member_id, now=now)
    if leave:
        dup = dup.with_status(leave=True)
    put_raw(via, records.key(dup.name), dup.to_json())
    return dup.name


def reconciler_leader(node: Node) -> str | None:
    async def go() -> str | None:
        async with node.store() as st:
            kv = await st.get(ELECTION_KEY)
            return json.loads(kv.value)["name"] if kv else None

    return run_async(go())


def timed_wait(cond: Callable[[], Any], timeout: float, what: str, node: Node | None = None,
               interval: float = 0.05, since: float | None = None) -> float:
    """Seconds from `since` (default: now) until cond() holds; printed for the test log."""
    t0 = time.monotonic() if since is None else since
    wait_for(cond, timeout, what, node=node, interval=interval)
    took = time.monotonic() - t0
    print(f"measured: {what}: {took:.2f}s")
    return took


def record_is(node: Node, name: str, **want: Any) -> Callable[[], bool]:
    def check() -> bool:
        r = recs(node).get(name)
        if r is None:
            return bool(want.get("absent"))
        got = {"joined": r.joined, "leave": r.leave, "reconcile_status": r.reconcile_status, "message": r.message,
               "peer_address": r.peer_address, "member_id": r.member_id}
        return all(got[k] == v for k, v in want.items() if k != "absent") and not want.get("absent")

    return check


def form(cluster: Cluster, names: list[str], **kw: Any) -> list[Node]:
    """Bootstrap names[0], join the rest with one token, wait for every record Joined=True."""
    first = cluster.bootstrap(names[0], **kw.get("first", {}))
    token = first.token()
    rest = []
    for n in names[1:]:
        node = cluster.node(n, **kw.get("each", {}).get(n, {}))
        node.start(token)
        rest.append(node)
    nodes = [first, *rest]
    cluster.wait_voters(first, set(kw.get("member_names", names)), timeout=120)
    wait_for(lambda: all(r.joined == "True" for r in recs(first).values()) and len(recs(first)) == len(names),
             30, "every record Joined=True", node=first)
    return nodes


def form_in_sync(cluster: Cluster, names: list[str], sync_timeout: float = 30.0,
                 node_kw: Callable[[str], dict[str, Any]] = lambda name: {}) -> tuple[list[Node], str]:
    """Bootstrap names[0], start the others with one token, wait until all are voters and the
    records are in sync (in_sync). Returns the nodes and the token (to rejoin a node with)."""
    first = cluster.bootstrap(names[0], **node_kw(names[0]))
    token = first.token()
    rest = [cluster.node(name, **node_kw(name)) for name in names[1:]]
    for node in rest:
        node.start(token)
    cluster.wait_voters(first, set(names), timeout=120)
    wait_for(lambda: in_sync(first, set(names)), sync_timeout, f"{len(names)} records in sync", node=first)
    return [first, *rest], token


def in_sync(node: Node, names: set[str]) -> bool:
    """Exactly one record per member, named like it, with its ID, Joined=True."""
    members = {m.name: m for m in node.members()}
    rs = recs(node)
    ids = [r.member_id for r in rs.values()]
    return (set(members) == names and set(rs) == names and len(ids) == len(set(ids))
            and all(rs[n].member_id == members[n].hex_id and rs[n].joined == "True" for n in names))
