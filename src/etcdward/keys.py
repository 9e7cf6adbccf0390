"""Every key etcdward keeps in etcd, and the codec of the join record: one place for the layout.

    /etcdward/etcdmembers/<name>       EtcdMember records (records.py)
    /etcdward/tokens/<id>              join tokens, hashes only (tokens.py)
    /etcdward/join-queue/<hash>        a place in the join queue, bound to its own lease (join/server.py)
    /etcdward/joins/<member id hex>    who asked for a learner, when, and how often since (JoinRecord)
    /etcdward/election/reconciler      the reconciler leader, bound to its lease (reconcile/election.py)
    /etcdward/alive/<member id hex>    a controller's liveness, on its own lease (membership.py)
    /etcdward/health                   read (never written) by the readiness probe
    /etcdward/backup/status            last backup success and failure, any node (backup/report.py)
    /etcdward/backup/before-change     a backup before a membership change was taken within its
                                       lease (30 s): the cluster-wide rate limit (backup/schedule.py)
    /etcdward/certs/renew-request      `certs renew --all`: every controller renews its leaf
                                       certificates once per request id (certrenewal.py)
    /etcdward/certs/renewed/<member id hex>  a controller's answer to that request, on a lease
    /etcdward/maintenance/defrag-lock  a defrag is running (who, since), bound to its holder's lease:
                                       one defrag at a time, cluster-wide (maintenance/lock.py)
    /etcdward/maintenance/last         the last maintenance done: what, when, by whom, on which members
"""

from __future__ import annotations

import json
import time

from .frozen import frozen, replace

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any

ROOT = "/etcdward/"  # every key below is under it
ETCDMEMBERS = "/etcdward/etcdmembers/"
TOKENS = "/etcdward/tokens/"
JOIN_QUEUE = "/etcdward/join-queue/"
JOINS = "/etcdward/joins/"
RECONCILER_LEADER = "/etcdward/election/reconciler"
ALIVE = "/etcdward/alive/"
HEALTH = "/etcdward/health"
BACKUP_STATUS = "/etcdward/backup/status"
BACKUP_BEFORE_CHANGE = "/etcdward/backup/before-change"
CERTS_RENEW_REQUEST = "/etcdward/certs/renew-request"
CERTS_RENEWED = "/etcdward/certs/renewed/"
DEFRAG_LOCK = "/etcdward/maintenance/defrag-lock"
MAINTENANCE_LAST = "/etcdward/maintenance/last"


def join_key(member_id: int) -> str:
    return JOINS + format(member_id, "x")


def member_id_of(key: str, prefix: str) -> int | None:
    """The member ID at the end of a key under prefix (JOINS, ALIVE), or None."""
    try:
        return int(key.removeprefix(prefix), 16)
    except ValueError:
        return None


@frozen
class JoinRecord:
    """/etcdward/joins/<member id>: written by the join API when it adds a learner, rewritten
    (seen + 1) each time the joiner repeats its request; deleted once the member votes or is gone.

    A learner cannot write to etcd, so its catch-up progress travels with those repeats: the
    joiner sends its etcd's applied index, and the serving voter records it with its own applied
    index read at the same moment (`learner_applied` / `cluster_applied` is the progress) and
    counts the repeats since the learner's index last moved while it was behind (`stalled`).
    Times are the serving hosts' clocks, shown by `etcdward status`, never compared by the
    reconciler (it watches the mod revision change)."""

    node: str  # the name the learner was requested for (etcd knows none until it starts)
    peer_url: str
    added: float  # unix time of the add, on the serving host's clock
    seen: int = 0  # repeated requests answered since the add
    heard_at: float | None = None  # unix time of the last repeat, on the serving host's clock
    learner_applied: int | None = None  # the learner's etcd applied index, as its joiner last sent it
    cluster_applied: int | None = None  # the serving voter's applied index at that moment
    stalled: int = 0  # repeats since learner_applied last grew while it was behind

    def to_json(self) -> str:
        d: dict[str, Any] = {"node": self.node, "peerURL": self.peer_url, "added": self.added, "seen": self.seen}
        if self.heard_at is not None:
            d["heardAt"] = self.heard_at
        if self.learner_applied is not None:
            d.update(learnerApplied=self.learner_applied, clusterApplied=self.cluster_applied, stalled=self.stalled)
        return json.dumps(d)

    def heard(self, learner_applied: int | None = None, cluster_applied: int | None = None,
              now: float | None = None) -> JoinRecord:
        """The record after one more repeat (with the learner's applied index, when it sent one)."""
        stalled = 0
        if learner_applied is None:
            learner_applied, cluster_applied, stalled = self.learner_applied, self.cluster_applied, self.stalled
        elif (self.learner_applied is not None and learner_applied <= self.learner_applied
              and cluster_applied is not None and learner_applied < cluster_applied):
            stalled = self.stalled + 1
        return replace(self, seen=self.seen + 1, heard_at=time.time() if now is None else now,
                       learner_applied=learner_applied, cluster_applied=cluster_applied, stalled=stalled)

    @property
    def progress(self) -> float | None:
        """The learner's catch-up in percent (capped at 100), None when its joiner sent none."""
        if self.learner_applied is None or not self.cluster_applied:
            return None
        return min(100.0, 100.0 * self.learner_applied / self.cluster_applied)

    @classmethod
    def new(cls, node: str, peer_url: str) -> JoinRecord:
        return cls(node, peer_url, time.time())

    @classmethod
    def parse(cls, raw: bytes | str) -> JoinRecord | None:
        """None for a body that is not a join record (written by hand, or corrupt)."""
        try:
            d: Any = json.loads(raw)
            applied, cluster = d.get("learnerApplied"), d.get("clusterApplied")
            record = cls(d["node"], d["peerURL"], float(d["added"]), int(d.get("seen") or 0),
                         None if d.get("heardAt") is None else float(d["heardAt"]),
                         None if applied is None else int(applied), None if cluster is None else int(cluster),
                         int(d.get("stalled") or 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return record if isinstance(record.node, str) and isinstance(record.peer_url, str) else None
