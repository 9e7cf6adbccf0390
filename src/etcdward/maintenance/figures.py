"""What each controller publishes about its own etcd in its liveness key, and how it is read back.

Client ports listen on 127.0.0.1 only, so the reconciler leader cannot ask another member's
etcd for its db size: each controller adds its member's Status figures to its liveness key
(/etcdward/alive/<member id>, reconcile/election.py) together with the URL of its API, through
which the leader (or `etcd defrag --all`) asks it to defragment.

The figures are the "report" in that key (memberreport.py: rewritten only when something
changed or every REPORT_EVERY seconds; under NOSPACE such writes fail and the lease is still
renewed: keep-alives are not refused by the quota).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..keys import ALIVE, member_id_of
from ..store import Store
from .plan import Figures

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
        report = body.get("report")
        out[mid] = LiveController(mid, str(body.get("name") or ""), url if isinstance(url, str) else "",
                                  Figures.parse(report if isinstance(report, dict) else {}))
    return out
