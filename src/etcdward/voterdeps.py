"""What the services of a voting controller are given: one small frozen object instead of the
controller itself, so that none of them reaches into another's state (and the import graph has
no loop back to node.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from .config import Config
from .heartbeats import Heartbeats
from .localstate import Identity
from .metrics import Metrics
from .paths import DataDir

if TYPE_CHECKING:  # types only
    from .etcdversions import Version
    from .store import Store


@dataclass(frozen=True)
class VoterDeps:
    store: Store
    cfg: Config  # the effective config
    data: DataDir
    ident: Identity  # with the member ID: the services run only once this member votes
    etcd_version: Version | None = None  # of the etcd binary this controller runs
    restart_etcd: Callable[[], Awaitable[None]] | None = None  # restart the local etcd (the supervisor's)
    # the controller's /metrics (its own registry) and its loops' heartbeats (/livez)
    metrics: Metrics = field(default_factory=lambda: Metrics(CollectorRegistry()))
    heartbeats: Heartbeats = field(default_factory=Heartbeats)

    @property
    def member_id(self) -> int:
        return int(self.ident.member_id or "0", 16)
