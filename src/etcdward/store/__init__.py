"""etcd access for the rest of etcdward. Import from here.

Both clients speak etcd's v3 API as the JSON gateway on the client port serves it (wire.py):
`Store` (client.py) in the event loop, `GatewayReader` (gateway.py) blocking, for one-shot CLI
reads. `Store` is imported on first use: the values and errors are not, so that a CLI command
that only reads never loads asyncio or ssl.py."""

from __future__ import annotations

from . import errors
from .types import KV, Alarm, Member, Status, WatchEvent

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints

if TYPE_CHECKING:
    from typing import Any

    from ..paths import DataDir  # not imported at run time: the fast CLI path skips its imports
    from .client import Store

__all__ = ["KV", "Alarm", "Member", "Status", "Store", "WatchEvent", "errors", "local_store"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from .client import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def local_store(data: DataDir, client_port: int, timeout: float = 5.0) -> Store:
    """A client for this node's etcd at https://127.0.0.1:<clientPort>, with the node's client cert."""
    from .client import Store

    ca, _ = data.etcd_cert("ca")
    crt, key = data.etcd_cert("client")
    return Store.from_files(f"127.0.0.1:{client_port}", ca, crt, key, timeout=timeout)
