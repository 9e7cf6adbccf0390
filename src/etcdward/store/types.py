"""What the etcd adapters return: plain frozen values, shared by the CLI's blocking
gateway reader and the asyncio Store."""

from __future__ import annotations

import json

from ..frozen import frozen

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any


@frozen
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @property
    def started(self) -> bool:
        # An added member has no name until its process starts and publishes itself.
        return bool(self.name)

    @property
    def peer_url(self) -> str:
        return self.peer_urls[0] if self.peer_urls else ""

    @property
    def hex_id(self) -> str:
        return format(self.id, "x")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.hex_id, "name": self.name, "peerURLs": list(self.peer_urls),
            "clientURLs": list(self.client_urls), "isLearner": self.is_learner, "started": self.started,
        }


@frozen
class Status:
    member_id: int
    cluster_id: int
    leader_id: int
    raft_term: int
    raft_index: int
    is_learner: bool
    version: str
    db_size: int
    errors: tuple[str, ...]  # etcd's own: "etcdserver: no leader", and every active alarm of the cluster
    raft_applied_index: int = 0
    db_size_in_use: int = 0  # bytes of db_size holding data; the rest is free pages a defrag returns
    db_size_quota: int = 0  # etcd 3.6 reports its --quota-backend-bytes; 0 = not reported
    revision: int = 0  # the store revision when this member answered


@frozen
class Alarm:
    """An active etcd alarm: NOSPACE (the db reached its quota: reads and deletes only) or CORRUPT."""
    member_id: int
    kind: str

    def as_dict(self) -> dict[str, str]:
        return {"memberID": format(self.member_id, "x"), "alarm": self.kind}


@frozen
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    def json(self) -> Any:
        return json.loads(self.value)


@frozen
class WatchEvent:
    kind: str  # "put" | "delete"
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0  # of the key as written by this event (puts only)
    prev_value: bytes | None = None  # the value before this event, when the watch asked for it
