"""etcd access for the rest of etcdward. Import from here, never from etcd3aio."""

from __future__ import annotations

from ..paths import DataDir
from . import errors
from .client import KV, Alarm, Member, Status, Store, WatchEvent

__all__ = ["KV", "Alarm", "Member", "Status", "Store", "WatchEvent", "errors", "local_store"]


def local_store(data: DataDir, client_port: int, timeout: float = 5.0) -> Store:
    """A client for this node's etcd at https://127.0.0.1:<clientPort>, with the node's client cert."""
    ca, _ = data.etcd_cert("ca")
    crt, key = data.etcd_cert("client")
    return Store.from_files(f"127.0.0.1:{client_port}", ca, crt, key, timeout=timeout)
