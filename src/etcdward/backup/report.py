"""What the cluster knows about its backups: the status record in etcd and the metrics.

    /etcdward/backup/status   {"lastSuccess": {"time", "unix", "node", "trigger", "path",
                                               "durationSeconds", "revision"},
                               "lastFailure": {"time", "unix", "node", "trigger", "reason",
                                               "durationSeconds"}}

Written (compare-and-swap, so that a success never erases a failure or the other way round)
by whichever controller took the backup: the reconciler leader for scheduled ones, the
controller that made the change for one before a membership change. `etcdward status` on any
node shows it. Every controller exports the metrics; the last-success gauges follow the record
(so any node can be scraped), the failure counter counts this process's own failures.
"""

from __future__ import annotations

import datetime as dt
import json

from ..keys import BACKUP_STATUS
from ..store import errors as E

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints

if TYPE_CHECKING:  # `etcdward status`'s fast path reads parse_status without asyncio or prometheus_client
    from typing import Any

    from ..metrics import Metrics
    from ..store import Store

def _stamp(unix: float) -> str:
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def success_entry(unix: float, node: str, trigger: str, path: str, duration: float, revision: int) -> dict[str, Any]:
    return {"time": _stamp(unix), "unix": unix, "node": node, "trigger": trigger, "path": path,
            "durationSeconds": round(duration, 3), "revision": revision}


def failure_entry(unix: float, node: str, trigger: str, reason: str, duration: float) -> dict[str, Any]:
    return {"time": _stamp(unix), "unix": unix, "node": node, "trigger": trigger, "reason": reason,
            "durationSeconds": round(duration, 3)}


def parse_status(raw: bytes | str | None) -> dict[str, Any]:
    """The record as a dict with lastSuccess/lastFailure (each a dict or None); {} parts for junk."""
    try:
        d = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        d = {}
    if not isinstance(d, dict):
        d = {}
    return {k: d.get(k) if isinstance(d.get(k), dict) else None for k in ("lastSuccess", "lastFailure")}


async def read_status(store: Store) -> dict[str, Any]:
    kv = await store.get(BACKUP_STATUS)
    return parse_status(kv.value if kv else None)


async def record(store: Store, field: str, entry: dict[str, Any], attempts: int = 5) -> None:
    """Set one field of the status record (CAS); logged, never raised: a backup's outcome must
    not fail because etcd could not be told about it."""
    import logging  # here: `etcdward status`'s fast path imports this module for parse_status only

    log = logging.getLogger(__name__)
    try:
        for _ in range(attempts):
            kv = await store.get(BACKUP_STATUS)
            status = parse_status(kv.value if kv else None)
            status[field] = entry
            body = json.dumps(status)
            done = await (store.update(BACKUP_STATUS, body, kv.mod_revision) if kv
                          else store.create(BACKUP_STATUS, body))
            if done:
                return
        log.warning("backup status: %s not recorded: the record kept changing", field)
    except E.StoreError as e:
        log.warning("backup status: %s not recorded in etcd: %s", field, e)


class BackupMetrics:
    """Keeps the etcdward_backup_* gauges (defined in metrics.py) following the status record."""

    def __init__(self, metrics: Metrics) -> None:
        self.last_success = metrics.backup_last_success
        self.duration = metrics.backup_duration
        self.last_failure = metrics.backup_last_failure
        self.failures = metrics.backup_failures
        self._success_unix = self._failure_unix = 0.0

    def follow(self, status: dict[str, Any]) -> None:
        """Take the newer of what this process saw and what the record says."""
        ok, bad = status.get("lastSuccess"), status.get("lastFailure")
        if ok and as_number(ok.get("unix")) > self._success_unix:
            self.succeeded(as_number(ok.get("unix")), as_number(ok.get("durationSeconds")))
        if bad and as_number(bad.get("unix")) > self._failure_unix:
            self._failure_unix = as_number(bad.get("unix"))
            self.last_failure.set(self._failure_unix)

    def succeeded(self, unix: float, duration: float) -> None:
        self._success_unix = unix
        self.last_success.set(unix)
        self.duration.set(duration)

    def failed(self, unix: float) -> None:
        self.failures.inc()
        self._failure_unix = unix
        self.last_failure.set(unix)


def as_number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0
