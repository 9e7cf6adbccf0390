"""Backups inside the controller (`spec.backup`): on a schedule while leading the reconciler,
and before membership changes.

    BackupService.take(trigger)     one backup into spec.backup.dir, verified, then retention;
                                    its outcome logged, counted and recorded (report.py). Never
                                    raises: a failed backup must not stop anything else.
    BackupService.run_schedule()    every `interval` (run by the reconciler leader only, as a
                                    task beside its loop, cancelled when leadership is lost)
    BackupService.before_change()   awaited before a learner add (join API, on the serving
                                    controller) and a member removal (reconciler leader); its
                                    due_before_change() by `etcdward etcd leave` too
    BackupService.run()             on every voting controller: the metrics follow the status
                                    record, and a backup in progress is stopped with the service

A backup runs in a task of its own (the heavy parts in a worker thread), so neither the
reconciler loop nor the join API waits for a scheduled one; only a membership change waits for
the backup before it, and at most BEFORE_CHANGE_WAIT seconds (then it goes ahead and the backup
carries on). Backups before changes are rate-limited cluster-wide: the first controller to
create /etcdward/backup/before-change (bound to a lease of RATE_LIMIT seconds) takes one; while
that key exists, other changes go ahead without. Any voter's snapshot is the cluster's data, so
the controller serving a join takes the backup itself instead of asking the leader: no extra
round trip, and a join still gets its backup while no leader is elected.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import EtcdwardError
from ..heartbeats import ETCD_CALL, Heartbeats
from ..keys import BACKUP_BEFORE_CHANGE, BACKUP_STATUS
from ..paths import DataDir
from ..store import Store
from ..store import errors as E
from ..tasks import cancel_and_wait
from . import report
from .archive import archive_name
from .retention import prune
from .take import take_backup

log = logging.getLogger(__name__)

RATE_LIMIT = 30  # seconds: at most one backup before a membership change per this long, cluster-wide
BEFORE_CHANGE_WAIT = 30.0  # a membership change waits at most this long for its backup
FOLLOW_EVERY = 60.0  # the status record for the metrics: read on every change (watched), and this often
TAKE_BOUND = 600.0  # the longest a backup may take (the snapshot's timeout): the schedule waits for it


@dataclass(frozen=True)
class Outcome:
    ok: bool
    path: Path | None
    reason: str  # why it failed ("" on success)
    duration: float


def describe(e: BaseException) -> str:
    """One line for an operator: what failed, where."""
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}"
    if isinstance(e, E.StoreError):
        return f"etcd: {e}"
    if isinstance(e, EtcdwardError):
        return str(e)
    return f"{type(e).__name__}: {e} (a bug: please report it)"


class BackupService:
    def __init__(self, store: Store, data: DataDir, cfg: Config, node: str, metrics: report.BackupMetrics,
                 clock: Callable[[], float] = time.time, heartbeats: Heartbeats | None = None) -> None:
        spec = cfg.spec.backup
        self.store, self.data, self.node, self.metrics, self.clock = store, data, node, metrics, clock
        self.heartbeats = heartbeats or Heartbeats()
        self.dir = Path(spec.dir) if spec.dir else data.root / "backups"
        self.keep = spec.keep
        self.interval = spec.interval_seconds
        self.config_yaml = cfg.to_yaml().encode()
        self._running: asyncio.Task[Outcome] | None = None

    # -- one backup ----------------------------------------------------------------------------
    def start(self, trigger: str) -> asyncio.Task[Outcome]:
        """The backup in progress, or a new one: two never run at once in one controller."""
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._take(trigger), name=f"backup ({trigger})")
        return self._running

    async def take(self, trigger: str) -> Outcome:
        return await asyncio.shield(self.start(trigger))

    async def _take(self, trigger: str) -> Outcome:
        t0, unix = time.monotonic(), self.clock()
        try:
            now = dt.datetime.fromtimestamp(unix, dt.timezone.utc)
            if (self.dir / archive_name(now)).exists():  # names have whole seconds: wait for the next
                await asyncio.sleep(1.0 - now.microsecond / 1e6)
                unix = self.clock()
                now = dt.datetime.fromtimestamp(unix, dt.timezone.utc)
            taken = await take_backup(self.store, self.data, self.config_yaml, self.dir, now)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the controller
            duration, reason = time.monotonic() - t0, describe(e)
            self.metrics.failed(unix)
            log.warning("backup (%s) failed after %.1fs: %s", trigger, duration, reason)
            await report.record(self.store, "lastFailure",
                                report.failure_entry(unix, self.node, trigger, reason, duration))
            return Outcome(False, None, reason, duration)
        assert taken.path is not None
        duration = time.monotonic() - t0
        self.metrics.succeeded(unix, duration)
        log.info("backup (%s): %s in %.2fs (revision %d)", trigger, taken.path, duration, taken.manifest.revision)
        await report.record(self.store, "lastSuccess", report.success_entry(
            unix, self.node, trigger, str(taken.path), duration, taken.manifest.revision))
        try:
            await asyncio.to_thread(prune, self.dir, self.keep, frozenset({taken.path.name}))
        except OSError as e:
            log.warning("backup retention in %s failed: %s", self.dir, describe(e))
        return Outcome(True, taken.path, "", duration)

    # -- the schedule (reconciler leader only) -------------------------------------------------
    async def run_schedule(self) -> None:
        if not self.interval:
            return
        delay = await self._first_delay()
        log.info("scheduled backups every %gs into %s (keep %d); next in %.0fs", self.interval, self.dir,
                 self.keep, delay)
        with self.heartbeats.loop("backup-schedule", every=self.interval, work=TAKE_BOUND) as hb:
            while True:
                hb.beat(next_in=delay)
                await asyncio.sleep(delay)
                hb.beat()
                started = time.monotonic()
                await self.take("scheduled")
                delay = max(0.0, self.interval - (time.monotonic() - started))

    async def _first_delay(self) -> float:
        """A new leader goes on with the schedule: the next backup is due one interval after the
        cluster's last successful one (as the clock of the host that took it said)."""
        try:
            last = (await report.read_status(self.store)).get("lastSuccess") or {}
        except E.StoreError:
            return 0.0
        since = self.clock() - report.as_number(last.get("unix"))
        return min(self.interval, max(0.0, self.interval - since))

    # -- before a membership change ------------------------------------------------------------
    async def before_change(self, what: str) -> bool:
        """Take (or join) the backup before `what`; True if it waited for one (time has passed:
        the caller should look at the cluster again), False if the rate limit said none is due."""
        try:
            task = await self.due_before_change(what)
        except E.StoreError as e:
            log.warning("backup before %s: not taken, etcd is not available (%s)", what, e)
            return False
        if task is None:
            return False
        done, _ = await asyncio.wait({task}, timeout=BEFORE_CHANGE_WAIT)
        if not done:
            log.warning("backup before %s: still running after %.0fs; going ahead with the change", what,
                        BEFORE_CHANGE_WAIT)
        return True

    async def due_before_change(self, what: str) -> asyncio.Task[Outcome] | None:
        """The backup before `what`: the one running, or a new one if the cluster-wide rate limit
        lets this controller claim it; None when it does not (one was taken < RATE_LIMIT s ago).
        StoreError when etcd cannot say. (`etcdward etcd leave` waits for its outcome.)"""
        if (self._running is None or self._running.done()) and not await self._claim(what):
            return None
        return self.start(f"before {what}")

    async def _claim(self, what: str) -> bool:
        if await self.store.get(BACKUP_BEFORE_CHANGE) is not None:
            return False
        lease = await self.store.grant_lease(RATE_LIMIT)
        body = json.dumps({"node": self.node, "before": what, "unix": self.clock()})
        if await self.store.create(BACKUP_BEFORE_CHANGE, body, lease=lease):
            return True
        await self.store.revoke_lease(lease)
        return False

    # -- on every voting controller ------------------------------------------------------------
    async def run(self) -> None:
        changed = asyncio.Event()

        async def watch() -> None:  # an idle cluster's status record never changes: no polling for it
            async for _ in self.store.follow_prefix(BACKUP_STATUS):
                changed.set()

        watcher = asyncio.create_task(watch(), name="backup-status-watch")
        try:
            with self.heartbeats.loop("backup-status", every=FOLLOW_EVERY, work=ETCD_CALL) as hb:
                while True:
                    hb.beat()
                    changed.clear()
                    try:
                        self.metrics.follow(await report.read_status(self.store))
                    except E.StoreError as e:
                        log.debug("backup status: %s", e)
                    with contextlib.suppress(TimeoutError):  # asyncio.timeout: never swallows a cancel
                        async with asyncio.timeout(FOLLOW_EVERY):
                            await changed.wait()
        finally:
            await cancel_and_wait([watcher, *([self._running] if self._running is not None else [])])
