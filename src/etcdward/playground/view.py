"""The live view of `etcdward up`: a pure function from a snapshot of the playground (its
processes, and what one node's etcd says) to a rich renderable. No I/O here, so every state a
forming cluster goes through can be tested without etcd (tests/test_playground_view.py).

The etcd member list is the truth: a node's role comes from it; the join queue, the join
records and the liveness keys only say how far a node that is not a voter yet has got.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..keys import JoinRecord
from ..records import EtcdMember
from ..reconcile.rules import Kind, duplicate_actions, record_actions
from ..reconcile.rules import Snapshot as RulesSnapshot
from ..store import Member

EVENTS_SHOWN = 6


@dataclass(frozen=True)
class NodeState:
    """What `up` knows of one of its controller processes."""

    name: str
    peer_url: str
    launched: bool = False  # its process was started (joiners start once the first node is ready)
    joins: bool = False  # started with a join token (a voter of those was promoted)
    exit_code: int | None = None  # set once the process has exited


@dataclass(frozen=True)
class ClusterState:
    """What one node's etcd said in one refresh."""

    read_from: str  # the node whose etcd answered
    cluster_id: int
    leader_id: int
    members: tuple[Member, ...]
    alive: frozenset[int] = frozenset()  # member IDs whose controller's liveness key is live
    reconciler_leader: str | None = None
    joins: Mapping[int, JoinRecord] = field(default_factory=dict)
    queue: tuple[str, ...] = ()  # peer URLs in the join queue, first in line first
    records: tuple[EtcdMember, ...] = ()
    invalid_records: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Snapshot:
    nodes: tuple[NodeState, ...]
    cluster: ClusterState | None  # None until some node's etcd answers
    now: float  # unix time of the read
    elapsed: float = 0.0  # seconds since `up` started
    unreachable: str = ""  # why no etcd answered, when cluster is None
    events: tuple[str, ...] = ()  # the playground's own log lines, oldest first
    stopping: bool = False


@dataclass(frozen=True)
class Row:
    node: str
    member_id: str
    peer_url: str
    role: str  # voter | learner | "" (not a member)
    started: str  # yes | no | ""
    live: str  # yes | no | "" (its controller's liveness key)
    progress: str  # where the node is on its way to voting


def _member_of(node: NodeState, c: ClusterState) -> Member | None:
    by_name = next((m for m in c.members if m.name == node.name), None)
    return by_name or next((m for m in c.members if m.peer_url == node.peer_url), None)


def _progress(node: NodeState, m: Member | None, c: ClusterState | None) -> str:
    if node.exit_code is not None:
        return f"exited (code {node.exit_code})"
    if not node.launched:
        return "waiting to start"
    if c is None:
        return "starting" if node.joins else "bootstrapping"
    if m is None:
        if not node.joins:
            return "starting"
        if node.peer_url in c.queue:
            return f"queued ({c.queue.index(node.peer_url) + 1} of {len(c.queue)})"
        return "asking to join"
    if not m.is_learner:
        return "promoted" if node.joins else "voter"
    if not m.started:
        return "added, its etcd starting"
    return "catching up to be promoted"


def rows(s: Snapshot) -> list[Row]:
    """One row per playground node, then one per member no node accounts for."""
    c = s.cluster
    out: list[Row] = []
    seen: set[int] = set()
    for n in s.nodes:
        m = _member_of(n, c) if c else None
        if m is not None:
            seen.add(m.id)
        out.append(_row(n.name, m, c, _progress(n, m, c), n.peer_url))
    for m in sorted(c.members if c else (), key=lambda m: m.id):
        if m.id not in seen:
            join = c.joins.get(m.id) if c else None
            out.append(_row(m.name or (join.node if join else "?"), m, c, "not started by this playground", m.peer_url))
    return out


def _row(name: str, m: Member | None, c: ClusterState | None, progress: str, peer_url: str) -> Row:
    if m is None or c is None:
        return Row(name, "", peer_url, "", "", "", progress)
    return Row(name, m.hex_id, m.peer_url or peer_url, "learner" if m.is_learner else "voter",
               "yes" if m.started else "no", "yes" if m.id in c.alive else "no", progress)


def records_out_of_sync(c: ClusterState, now: float) -> list[str]:
    """The records the reconciler still has to write or delete (by the reconcile rules
    themselves), and the keys that are not records at all; [] when the records match etcd."""
    rs = RulesSnapshot(members=c.members, joins=c.joins, now=now, records=c.records,
                       invalid_records=c.invalid_records, alive=c.alive, leader_id=c.leader_id)
    recs, _ = record_actions(rs)
    out = [f"{a.record.name} (duplicate)" for a in duplicate_actions(rs) if a.record]
    for a in recs:
        if a.kind is Kind.WRITE_RECORD and a.record is not None:
            out.append(a.record.name if a.record.resource_version else f"{a.record.name} (missing)")
    out += [f"{key} (invalid)" for key, _ in c.invalid_records]
    return out


def summary(s: Snapshot) -> str:
    """The headline: how many voters, who leads; the pty test looks for "N voters"."""
    c = s.cluster
    if c is None:
        return f"etcdward up · {len(s.nodes)} nodes · {s.elapsed:.0f}s · no etcd answers yet" + (
            f" ({s.unreachable})" if s.unreachable else "")
    voters = sum(1 for m in c.members if not m.is_learner)
    names = {m.id: m.name for m in c.members}
    return (f"etcdward up · cluster {c.cluster_id:x} · {plural(voters, 'voter')}, "
            f"{plural(len(c.members) - voters, 'learner')} · "
            f"etcd leader {names.get(c.leader_id) or (format(c.leader_id, 'x') if c.leader_id else 'none')} · "
            f"reconciler leader {c.reconciler_leader or 'none'} · {s.elapsed:.0f}s")


def records_line(s: Snapshot) -> str:
    c = s.cluster
    if c is None:
        return "records: unknown"
    differ = records_out_of_sync(c, s.now)
    if not differ:
        return f"records: {len(c.records)}, in sync with the member list"
    return f"records: {len(c.records)}, not in sync (the reconciler has yet to fix: {', '.join(differ)})"


def render(s: Snapshot) -> RenderableType:
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    # The leaders are in the headline: the table fits 80 columns (PROGRESS wraps below that).
    for col in ("NODE", "MEMBER ID", "PEER URL", "ROLE", "STARTED", "LIVE"):
        table.add_column(col, no_wrap=True)
    table.add_column("PROGRESS")
    for r in rows(s):
        style = "green" if r.role == "voter" else "red" if r.progress.startswith("exited") else "yellow"
        table.add_row(r.node, r.member_id, r.peer_url, r.role, r.started, r.live, r.progress, style=style)
    parts: list[RenderableType] = [Text(summary(s), style="bold"), table, Text(records_line(s))]
    if s.cluster is not None:
        parts.append(Text(f"read from {s.cluster.read_from}'s etcd", style="dim"))
    if s.events:
        parts.append(Text("\n".join(s.events[-EVENTS_SHOWN:]), style="dim"))
    parts.append(footer(s))
    return Group(*parts)


def footer(s: Snapshot) -> Text:
    if not s.stopping:
        return Text("Ctrl-C stops every controller", style="dim")
    if all(n.exit_code is not None or not n.launched for n in s.nodes):
        return Text("every controller has stopped", style="bold")
    return Text("stopping the controllers…", style="bold")


def plural(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"
