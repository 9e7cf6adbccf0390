"""The I/O side of the live view: read a snapshot of the playground about once a second and
redraw it (view.render draws it). One client stays open to the first node whose etcd answers;
each refresh is three requests: status, member list, and one range over etcdward's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import TYPE_CHECKING

from .. import records
from ..keys import ALIVE, ETCDMEMBERS, JOIN_QUEUE, JOINS, RECONCILER_LEADER, JoinRecord, member_id_of
from ..store import KV, Store, local_store
from ..store import errors as E
from .view import EVENTS_SHOWN, ClusterState, NodeState, Snapshot, render

if TYPE_CHECKING:
    from rich.live import Live

    from . import Playground, PlayNode

REFRESH = 1.0  # seconds between redraws
KEYS_ROOT = "/etcdward/"  # every key in keys.py lives under it: one range read per refresh


def cluster_state(read_from: str, cluster_id: int, leader_id: int, members: list, kvs: list[KV],
                  revision: int) -> ClusterState:
    """ClusterState from the member list and the keys under KEYS_ROOT (pure)."""
    alive = frozenset(mid for kv in kvs if kv.key.startswith(ALIVE) and (mid := member_id_of(kv.key, ALIVE)))
    joins = {}
    for kv in kvs:
        if kv.key.startswith(JOINS) and (mid := member_id_of(kv.key, JOINS)) and (j := JoinRecord.parse(kv.value)):
            joins[mid] = j
    queue = []
    for kv in sorted((kv for kv in kvs if kv.key.startswith(JOIN_QUEUE)), key=lambda kv: kv.create_revision):
        with contextlib.suppress(ValueError, AttributeError):
            queue.append(str(json.loads(kv.value).get("peerURL")))
    leader = None
    for kv in kvs:
        if kv.key == RECONCILER_LEADER:
            with contextlib.suppress(ValueError, AttributeError):
                leader = json.loads(kv.value).get("name")
    listing = records.listing([kv for kv in kvs if kv.key.startswith(ETCDMEMBERS)], revision)
    return ClusterState(read_from, cluster_id, leader_id, tuple(members), alive, leader, joins, tuple(queue),
                        listing.records, listing.invalid)


class LiveView:
    """Keeps the playground's log lines and draws the view until told to stop."""

    def __init__(self, pg: Playground, started: float | None = None) -> None:
        self.pg = pg
        self.started = time.monotonic() if started is None else started
        self.events: deque[str] = deque(maxlen=EVENTS_SHOWN)
        self.stopping = False
        self._store: Store | None = None
        self._store_node: PlayNode | None = None
        self._last: ClusterState | None = None

    def say(self, line: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {line}")

    def nodes(self) -> tuple[NodeState, ...]:
        return tuple(NodeState(n.name, f"https://{n.address}:2380", launched=n.proc is not None,
                               joins=n.with_token, exit_code=n.returncode()) for n in self.pg.nodes)

    async def _read(self, node: PlayNode) -> ClusterState:
        if self._store_node is not node or self._store is None:
            await self.close()
            store = local_store(node.data, node.client_port, timeout=2)
            await store.connect()
            self._store, self._store_node = store, node
        st = await self._store.status()
        members = await self._store.members()
        kvs, rev = await self._store.get_prefix(KEYS_ROOT)
        return cluster_state(node.name, st.cluster_id, st.leader_id, members, kvs, rev)

    async def snapshot(self) -> Snapshot:
        why = ""
        candidates = [n for n in self.pg.nodes if n.alive()]
        if self._store_node in candidates:  # keep asking the node that answered last
            candidates.remove(self._store_node)
            candidates.insert(0, self._store_node)
        cluster = None
        for n in candidates:
            try:
                cluster = await self._read(n)
                break
            except (E.StoreError, OSError) as e:
                why = f"{n.name}: {e}"
                await self.close()
        if cluster is None and self.stopping:
            cluster = self._last  # keep showing the members while their controllers stop
        self._last = cluster or self._last
        return Snapshot(self.nodes(), cluster, time.time(), time.monotonic() - self.started,
                        "" if cluster else why, tuple(self.events), self.stopping)

    async def run(self, live: Live, done: asyncio.Event) -> None:
        """Redraw every REFRESH seconds until done is set, then once more."""
        while True:
            live.update(render(await self.snapshot()), refresh=True)
            if done.is_set():
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), REFRESH)

    async def close(self) -> None:
        if self._store is not None:
            with contextlib.suppress(E.StoreError, OSError):
                await self._store.close()
        self._store, self._store_node = None, None
