"""What the etcd adapters return: plain frozen values, no gRPC (the CLI's gateway reads and the
gRPC client share them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Status:
    member_id: int
    cluster_id: int
    leader_id: int
    raft_term: int
    raft_index: int
    is_learner: bool
    version: str
    db_size: int
    errors: tuple[str, ...]


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # "put" | "delete"
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0  # of the key as written by this event (puts only)
    prev_value: bytes | None = None  # the value before this event, when the watch asked for it
