"""Is the cluster of this node's etcd data still there? (issue 10: a node that still holds the
data of a cluster that was restored elsewhere must neither rejoin nor bootstrap.)

While a controller that STARTs on existing data waits for its etcd to be ready, this check asks
its own etcd's peer listener for the member list and cluster ID (peerprobe: it answers before
etcd has a quorum) and then every other member's peer URL. When, several times in a row, at
least one of them answers for *another* cluster (the restored cluster, or a rebuilt one, now
lives at that address with the same CA: `request cluster ID mismatch` in etcd's log) and none
answers for this node's cluster, the cluster is gone for this node: the controller stops its
etcd, writes a tombstone and says how to rejoin.

Nothing answering proves nothing (the peers may be down, or this node cut off from them, for
a while): the node is not fenced then, it keeps waiting for a quorum. But after NO_PEER_AFTER
seconds with no other member answering at all, it says so, in its log (again every
NO_PEER_REPEAT s) and in state/no-peer.json, which `etcdward status` shows: that etcd cannot
start without a quorum, and what to do if the cluster was restored or rebuilt elsewhere. A
member removed by `recover` is told so by etcd itself (`the member has been permanently
removed`, supervisor.REMOVED_MARKERS).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

from . import localstate
from .config import Config
from .paths import DataDir
from .peerprobe import ask, ask_all, peer_tls

log = logging.getLogger(__name__)

INTERVAL = 2.0
STRIKES = 3  # consecutive rounds with only foreign answers: ~6-10 s after etcd starts
NO_PEER_AFTER = 20.0  # seconds without any answer from another member before saying so (issue: within 60 s)
NO_PEER_REPEAT = 60.0


class ClusterGone(Exception):
    """The cluster of this node's etcd data no longer exists where its members were."""


def gone_reason(data: DataDir, mine: str, foreign: dict[str, str]) -> str:
    seen = ", ".join(f"{url} answers for cluster {cid}" for url, cid in sorted(foreign.items()))
    return (f"the etcd cluster {mine} of this node's data is gone: {seen}, and no member answers for {mine} (it was "
            "restored from a backup or rebuilt elsewhere). This node neither rejoins with its old data nor "
            f"bootstraps. To rejoin the current cluster: `etcdward reset --data-dir {data.root}`, then start "
            "the controller with a join token from it")


def no_peer_reason(data: DataDir, mine: str, silent: list[str], seconds: float) -> str:
    return (f"no other member of this node's etcd cluster {mine} has answered in {seconds:.0f}s "
            f"({', '.join(silent)}): etcd cannot start without a quorum, so this controller keeps waiting for "
            "them. If they are only down or cut off, bring them back. If the cluster was restored from a backup "
            "or rebuilt elsewhere, this node cannot rejoin with its old data: stop this controller, run "
            f"`etcdward reset --force --data-dir {data.root}`, then start it with a join token from the current "
            "cluster")


class NoPeerNotice:
    """Says, after NO_PEER_AFTER s of silence from every other member, that this node waits
    without a quorum; says it again every NO_PEER_REPEAT s; forgets it when one answers."""

    def __init__(self, data: DataDir, after: float = NO_PEER_AFTER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.data, self.after, self.clock = data, after, clock
        self.silent_since: float | None = None
        self.logged_at: float | None = None

    def round(self, mine: str, others: list[str], answered: bool) -> None:
        if answered or not others:
            if self.silent_since is not None:
                localstate.clear_no_peer(self.data)
            self.silent_since = self.logged_at = None
            return
        now = self.clock()
        self.silent_since = self.silent_since if self.silent_since is not None else now
        if now - self.silent_since < self.after:
            return
        reason = no_peer_reason(self.data, mine, others, now - self.silent_since)
        localstate.write_no_peer(self.data, reason, time.time() - (now - self.silent_since))
        if self.logged_at is None or now - self.logged_at >= NO_PEER_REPEAT:
            log.warning("%s", reason)
            self.logged_at = now

    def clear(self) -> None:
        localstate.clear_no_peer(self.data)


async def watch_cluster_gone(data: DataDir, cfg: Config, pinned_cluster: str | None,
                             interval: float = INTERVAL, strikes: int = STRIKES) -> None:
    """Return never; raise ClusterGone once the evidence holds for `strikes` rounds in a row."""
    notice = NoPeerNotice(data)
    try:
        await _watch(data, cfg, pinned_cluster, interval, strikes, notice)
    finally:
        notice.clear()  # etcd is ready, or the node stops or is fenced: it no longer waits


async def _watch(data: DataDir, cfg: Config, pinned_cluster: str | None, interval: float, strikes: int,
                 notice: NoPeerNotice) -> None:
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
        notice.round(mine, others, any(a is not None for a in answers.values()))
        if foreign:
            log.warning("peer(s) of this node's cluster %s answer for another cluster: %s (%d/%d)", mine,
                        ", ".join(f"{u} -> {c}" for u, c in sorted(foreign.items())), count, strikes)
        if count >= strikes:
            raise ClusterGone(gone_reason(data, mine, foreign))
