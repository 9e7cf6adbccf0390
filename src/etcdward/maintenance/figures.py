"""What each controller publishes about its own etcd in its liveness key, and how it is read back.

Client ports listen on 127.0.0.1 only, so the reconciler leader cannot ask another member's
etcd for its db size: each controller adds its member's Status figures to its liveness key
(/etcdward/alive/<member id>, reconcile/election.py) together with the URL of its API, through
which the leader (or `etcd defrag --all`) asks it to defragment.

The key is rewritten only when a figure moved noticeably (or once a minute): a write every
beat would itself grow the db it measures, and under NOSPACE such writes fail anyway (the
liveness lease keeps being renewed: keep-alives are not refused by the quota).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..keys import ALIVE, member_id_of
from ..store import Status, Store
from .plan import Figures

REPUBLISH_EVERY = 60.0  # seconds: figures older than this are rewritten even when unchanged
SIZE_STEP = 0.02  # a size that moved by this share (or SIZE_STEP_MIN bytes, whichever is larger) is news
SIZE_STEP_MIN = 64 * 1024


def status_figures(status: Status) -> dict[str, Any]:
    """The figures of one member's Status, as its liveness key carries them."""
    return {"dbSize": status.db_size, "dbSizeInUse": status.db_size_in_use, "raftIndex": status.raft_index,
            "leader": format(status.leader_id, "x"), "errors": list(status.errors)}


def worth_publishing(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Has anything but the raft index (which moves with every write) changed noticeably?"""
    if old is None or old.keys() != new.keys():
        return True
    for key, value in new.items():
        if key == "raftIndex":
            continue
        if key in ("dbSize", "dbSizeInUse") and isinstance(value, int) and isinstance(old[key], int):
            if abs(value - old[key]) >= max(SIZE_STEP_MIN, SIZE_STEP * max(value, old[key])):
                return True
        elif value != old[key]:
            return True
    return False


@dataclass(frozen=True)
class LiveController:
    """A live controller as its liveness key describes it."""
    member_id: int
    name: str
    api_url: str  # "" from a controller that does not publish it
    figures: Figures | None


async def live_controllers(store: Store) -> dict[int, LiveController]:
    kvs, _ = await store.get_prefix(ALIVE)
    out = {}
    for kv in kvs:
        mid = member_id_of(kv.key, ALIVE)
        if mid is None:
            continue
        try:
            body = json.loads(kv.value)
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        url = body.get("apiURL")
        out[mid] = LiveController(mid, str(body.get("name") or ""), url if isinstance(url, str) else "",
                                  Figures.parse(body))
    return out
