"""Is the cluster of this node's etcd data still there? (issue 10: a node that still holds the
data of a cluster that was restored elsewhere must neither rejoin nor bootstrap.)

While a controller that STARTs on existing data waits for its etcd to be ready, this check asks
its own etcd's peer listener for the member list and cluster ID (peerprobe: it answers before
etcd has a quorum) and then every other member's peer URL. When, several times in a row, at
least one of them answers for *another* cluster (the restored cluster, or a rebuilt one, now
lives at that address with the same CA: `request cluster ID mismatch` in etcd's log) and none
answers for this node's cluster, the cluster is gone for this node: the controller stops its
etcd, writes a tombstone and says how to rejoin.

Nothing answering proves nothing (the peers may be down for a while): the node then simply
keeps waiting for its peers, as before. A member removed by `recover` is told so by etcd
itself (`the member has been permanently removed`, supervisor.REMOVED_MARKERS).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from .config import Config
from .paths import DataDir
from .peerprobe import ask, ask_all, peer_tls

log = logging.getLogger(__name__)

INTERVAL = 2.0
STRIKES = 3  # consecutive rounds with only foreign answers: ~6-10 s after etcd starts


class ClusterGone(Exception):
    """The cluster of this node's etcd data no longer exists where its members were."""


def gone_reason(data: DataDir, mine: str, foreign: dict[str, str]) -> str:
    seen = ", ".join(f"{url} answers for cluster {cid}" for url, cid in sorted(foreign.items()))
    return (f"the etcd cluster {mine} of this node's data is gone: {seen}, and no member answers for {mine} (it was "
            "restored from a backup or rebuilt elsewhere). This node neither rejoins with its old data nor "
            f"bootstraps. To rejoin the current cluster: `etcdward reset --data-dir {data.root}`, then start "
            "the controller with a join token from it")


async def watch_cluster_gone(data: DataDir, cfg: Config, pinned_cluster: str | None,
                             interval: float = INTERVAL, strikes: int = STRIKES) -> None:
    """Return never; raise ClusterGone once the evidence holds for `strikes` rounds in a row."""
    try:
        tls = peer_tls(data)
    except (OSError, ssl.SSLError) as e:
        log.warning("cannot check whether this node's cluster still exists (peer certificate: %s)", e)
        await asyncio.Event().wait()
        raise  # not reached
    own_url = cfg.peer_url
    count = 0
    while True:
        await asyncio.sleep(interval)
        own = await ask(own_url, tls)
        if own is None:
            count = 0
            continue
        mine = pinned_cluster or own.cluster_id
        others = sorted({m.peer_urls[0] for m in own.members if m.peer_urls and own_url not in m.peer_urls})
        answers = await ask_all(others, tls)
        foreign = {url: a.cluster_id for url, a in answers.items() if a is not None and a.cluster_id != mine}
        ours = [url for url, a in answers.items() if a is not None and a.cluster_id == mine]
        count = count + 1 if foreign and not ours else 0
        if foreign:
            log.warning("peer(s) of this node's cluster %s answer for another cluster: %s (%d/%d)", mine,
                        ", ".join(f"{u} -> {c}" for u, c in sorted(foreign.items())), count, strikes)
        if count >= strikes:
            raise ClusterGone(gone_reason(data, mine, foreign))
