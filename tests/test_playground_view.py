"""The live view of `etcdward up` is a pure function of a snapshot: every stage of a forming
cluster, the records check and the headline, without etcd."""

from __future__ import annotations

import io
import json

from rich.console import Console

from etcdward import records
from etcdward.frozen import replace
from etcdward.keys import ALIVE, ETCDMEMBERS, JOIN_QUEUE, RECONCILER_LEADER, JoinRecord, join_key
from etcdward.playground.live import cluster_state
from etcdward.playground.view import ClusterState, NodeState, Snapshot, records_line, render, rows, summary
from etcdward.store import KV, Member


def peer(i: int) -> str:
    return f"https://127.0.0.{10 + i}:2380"


def node(i: int, **kw: object) -> NodeState:
    return NodeState(f"n{i}", peer(i), **{"launched": True, "joins": i > 1, **kw})  # type: ignore[arg-type]


def member(i: int, learner: bool = False, started: bool = True) -> Member:
    return Member(0xA0 + i, f"n{i}" if started else "", (peer(i),), (), learner)


def record(m: Member, rev: int = 5) -> records.EtcdMember:
    return replace(records.for_member(m, now=0), resource_version=rev)


def text(s: Snapshot) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render(s))
    return console.export_text()


FORMING = ClusterState("n1", 0xC1, 0xA1, (member(1), member(2, learner=True, started=False),
                                          member(3, learner=True)),
                       alive=frozenset({0xA1}), reconciler_leader="n1",
                       joins={0xA2: JoinRecord("n2", peer(2), 0.0)}, queue=(peer(4),), records=(record(member(1)),))


def test_each_stage_of_a_join_has_its_own_progress() -> None:
    nodes = (node(1), node(2), node(3), node(4), node(5), node(6, launched=False), node(7, exit_code=1))
    got = {r.node: (r.role, r.started, r.live, r.progress) for r in rows(Snapshot(nodes, FORMING, 10.0))}
    assert got == {
        "n1": ("voter", "yes", "yes", "voter"),
        "n2": ("learner", "no", "no", "added, its etcd starting"),  # found by its peer URL
        "n3": ("learner", "yes", "no", "catching up to be promoted"),
        "n4": ("", "", "", "queued (1 of 1)"),
        "n5": ("", "", "", "asking to join"),
        "n6": ("", "", "", "waiting to start"),
        "n7": ("", "", "", "exited (code 1)"),
    }


def test_a_joined_voter_is_promoted_and_a_member_without_a_node_still_shows() -> None:
    stray = Member(0xFF, "", ("https://10.0.0.9:2380",), (), True)
    c = replace(FORMING, members=(member(1), member(2), stray), joins={0xFF: JoinRecord("x9", stray.peer_url, 0.0)})
    got = {r.node: r.progress for r in rows(Snapshot((node(1), node(2)), c, 10.0))}
    assert got == {"n1": "voter", "n2": "promoted", "x9": "not started by this playground"}


def test_before_any_etcd_answers() -> None:
    s = Snapshot((node(1, joins=False), node(2, launched=False)), None, 10.0, elapsed=3, unreachable="n1: refused")
    assert [r.progress for r in rows(s)] == ["bootstrapping", "waiting to start"]
    assert summary(s) == "etcdward up · 2 nodes · 3s · no etcd answers yet (n1: refused)"
    assert records_line(s) == "records: unknown"


def test_records_follow_the_reconcile_rules() -> None:
    ms = (member(1), member(2), member(3))
    synced = ClusterState("n1", 0xC1, 0xA2, ms, records=tuple(record(m) for m in ms))
    assert records_line(Snapshot((), synced, 10.0)) == "records: 3, in sync with the member list"
    stale = replace(record(ms[2]), peer_address="10.9.9.9")
    dup = replace(record(ms[0]), name="old-n1", create_revision=9)
    off = replace(synced, records=(record(ms[0]), dup, stale), invalid_records=((ETCDMEMBERS + "bad", "not JSON"),))
    assert records_line(Snapshot((), off, 10.0)) == (
        "records: 3, not in sync (the reconciler has yet to fix: old-n1 (duplicate), n2 (missing), n3, "
        "/etcdward/etcdmembers/bad (invalid))")


def test_the_view_shows_headline_table_records_and_events() -> None:
    ms = (member(1), member(2), member(3))
    c = ClusterState("n2", 0xC1, 0xA3, ms, frozenset({0xA1, 0xA2, 0xA3}), "n2",
                     records=tuple(record(m) for m in ms))
    out = text(Snapshot((node(1), node(2), node(3)), c, 10.0, elapsed=12, events=("started n1",)))
    assert "cluster c1 · 3 voters, 0 learners · etcd leader n3 · reconciler leader n2 · 12s" in out
    assert out.count("promoted") == 2 and "a1" in out and peer(3) in out
    assert "records: 3, in sync" in out and "started n1" in out and "Ctrl-C stops every controller" in out
    stopping = Snapshot((node(1, exit_code=0), node(2)), c, 10.0, stopping=True)
    assert "stopping the controllers…" in text(stopping)
    assert "every controller has stopped" in text(replace(stopping, nodes=(node(1, exit_code=0), node(2, exit_code=0))))


def test_cluster_state_from_the_keys_under_etcdward() -> None:
    def kv(key: str, value: object, rev: int = 1) -> KV:
        return KV(key, json.dumps(value).encode(), rev, rev, 0)

    m = member(1)
    kvs = [kv(ALIVE + "a1", {"name": "n1"}), kv(ALIVE + "junk", {}),
           kv(join_key(0xA2), {"node": "n2", "peerURL": peer(2), "added": 1.0}),
           kv(JOIN_QUEUE + "b", {"node": "n4", "peerURL": peer(4)}, rev=8),
           kv(JOIN_QUEUE + "a", {"node": "n3", "peerURL": peer(3)}, rev=7),
           kv(RECONCILER_LEADER, {"name": "n1"}), KV(ETCDMEMBERS + "n1", record(m).to_json().encode(), 3, 3, 0),
           KV(ETCDMEMBERS + "bad", b"{", 4, 4, 0), kv("/etcdward/tokens/x", {"hash": "h"})]
    c = cluster_state("n1", 0xC1, 0xA1, [m], kvs, 9)
    assert (c.alive, c.reconciler_leader, c.queue) == (frozenset({0xA1}), "n1", (peer(3), peer(4)))
    assert c.joins == {0xA2: JoinRecord("n2", peer(2), 1.0)}
    assert [r.name for r in c.records] == ["n1"] and [k for k, _ in c.invalid_records] == [ETCDMEMBERS + "bad"]
