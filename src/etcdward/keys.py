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
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
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


def join_key(member_id: int) -> str:
    return JOINS + format(member_id, "x")


def member_id_of(key: str, prefix: str) -> int | None:
    """The member ID at the end of a key under prefix (JOINS, ALIVE), or None."""
    try:
        return int(key.removeprefix(prefix), 16)
    except ValueError:
        return None


@dataclass(frozen=True)
class JoinRecord:
    """/etcdward/joins/<member id>: written by the join API when it adds a learner, rewritten
    (seen + 1) each time the joiner repeats its request; deleted once the member votes or is gone."""

    node: str  # the name the learner was requested for (etcd knows none until it starts)
    peer_url: str
    added: float  # unix time of the add, on the serving host's clock
    seen: int = 0  # repeated requests answered since the add

    def to_json(self) -> str:
        return json.dumps({"node": self.node, "peerURL": self.peer_url, "added": self.added, "seen": self.seen})

    def heard(self) -> JoinRecord:
        return JoinRecord(self.node, self.peer_url, self.added, self.seen + 1)

    @classmethod
    def new(cls, node: str, peer_url: str) -> JoinRecord:
        return cls(node, peer_url, time.time())

    @classmethod
    def parse(cls, raw: bytes | str) -> JoinRecord | None:
        """None for a body that is not a join record (written by hand, or corrupt)."""
        try:
            d: Any = json.loads(raw)
            record = cls(d["node"], d["peerURL"], float(d["added"]), int(d.get("seen") or 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return record if isinstance(record.node, str) and isinstance(record.peer_url, str) else None
