"""The printer columns of EtcdMember, in one place for `kubectl get` (a meta/v1 Table built by
the server) and `etcdward get` (the CLI's own table).

    kubectl:   NAME  PEER ADDRESS  MEMBER ID  JOINED  RECONCILE STATUS  AGE   (+ LEAVE, MESSAGE with -o wide)
    etcdward:  NAME  PEER ADDRESS  MEMBER ID  JOINED  RECONCILE STATUS        (+ LEAVE, MESSAGE, AGE with -o wide)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ..frozen import frozen
from ..records import EtcdMember

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any


def age(created: str, now: dt.datetime | None = None) -> str:
    """kubectl's short age ("5s", "3m", "2h", "4d") of a creationTimestamp."""
    try:
        t = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "<unknown>"
    secs = max(0, int(((now or dt.datetime.now(dt.timezone.utc)) - t).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size * (2 if unit != "m" else 1):
            return f"{secs // size}{unit}"
    return f"{secs}s"


@frozen
class Column:
    name: str
    type: str
    description: str
    cell: Callable[[EtcdMember], Any]
    format: str = ""

    def definition(self, priority: int) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format, "description": self.description,
                "priority": priority}


NAME = Column("NAME", "string", "the record's name (the etcd member name)", lambda r: r.name, "name")
PEER = Column("PEER ADDRESS", "string", "status.peerAddress", lambda r: r.peer_address)
MEMBER_ID = Column("MEMBER ID", "string", "status.memberID (hex)", lambda r: r.member_id)
JOINED = Column("JOINED", "string", "the Joined condition", lambda r: r.joined)
RECONCILE = Column("RECONCILE STATUS", "string", "status.reconcileStatus", lambda r: r.reconcile_status)
AGE = Column("AGE", "string", "time since metadata.creationTimestamp", lambda r: age(r.creation_timestamp))
LEAVE = Column("LEAVE", "boolean", "spec.leave", lambda r: r.leave)
MESSAGE = Column("MESSAGE", "string", "status.message", lambda r: r.message)

BASE = (NAME, PEER, MEMBER_ID, JOINED, RECONCILE)
KUBE_COLUMNS: tuple[tuple[Column, int], ...] = (*((c, 0) for c in BASE), (AGE, 0), (LEAVE, 1), (MESSAGE, 1))


def cli_columns(wide: bool) -> tuple[Column, ...]:
    return (*BASE, LEAVE, MESSAGE, AGE) if wide else BASE


def cli_cell(column: Column, rec: EtcdMember) -> str:
    value = column.cell(rec)
    return str(value).lower() if isinstance(value, bool) else str(value)


def kube_table(objects: list[tuple[EtcdMember, dict[str, Any]]], resource_version: str,
               with_objects: bool = True) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of (record, its object) pairs. Rows carry the object as
    PartialObjectMetadata-like full objects (kubectl reads metadata from them)."""
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [c.definition(p) for c, p in KUBE_COLUMNS],
        "rows": [{"cells": [c.cell(rec) for c, _ in KUBE_COLUMNS], **({"object": obj} if with_objects else {})}
                 for rec, obj in objects],
    }
