"""Runs the etcd child process: builds its command line, restarts it with backoff when it dies,
gives up after repeated fast crashes, and stops it cleanly (SIGTERM, then SIGKILL).

etcd's stdout/stderr go to logs/etcd.log under the data dir. The child gets PDEATHSIG=SIGKILL
so that a controller killed with -9 never leaves an orphan etcd holding the ports.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import datalock, localstate
from .config import Config
from .errors import Permanent
from .paths import DataDir

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger(__name__)

# Mozilla "intermediate" TLS 1.2 suites. etcd 3.4 has no --tls-min-version; limiting the
# suites to AEAD ones also rules out TLS 1.0/1.1 (TLS 1.3 is unaffected).
CIPHER_SUITES = ",".join([
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
])

FAST_CRASH_SECONDS = 10.0
MAX_FAST_CRASHES = 5
BACKOFF = (0.5, 1, 2, 4, 8)
STOP_GRACE = 10.0
REMOVED_MARKERS = ("the member has been permanently removed", "member has already been removed")


class EtcdBinaryNotFound(Permanent):
    pass


class SupervisorGaveUp(Permanent):
    """etcd crashed repeatedly; the message carries the tail of its log."""


class MemberWasRemoved(Exception):
    """etcd refused to run because this member was removed from the cluster."""


def find_etcd(configured: str | None = None) -> str:
    """config -> $ETCDWARD_ETCD_BIN -> PATH."""
    for source, candidate in (("spec.storage.etcd.binary", configured),
                              ("$ETCDWARD_ETCD_BIN", os.environ.get("ETCDWARD_ETCD_BIN"))):
        if candidate:
            if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
                return candidate
            raise EtcdBinaryNotFound(f"etcd binary {candidate!r} (from {source}) does not exist or is not "
                                     f"executable; fix {source} or install etcd-server")
    found = shutil.which("etcd")
    if not found:
        raise EtcdBinaryNotFound(
            "no etcd binary found: install it (apt-get install etcd-server) or set ETCDWARD_ETCD_BIN")
    return found


@dataclass(frozen=True)
class LaunchPlan:
    """How to start etcd this time: new cluster, existing member, or joining."""
    name: str
    initial_cluster: str | None = None  # "n1=https://...,n2=..." (bootstrap/join only)
    state: str | None = None  # "new" | "existing"
    cluster_token: str | None = None


def etcd_args(cfg: Config, data: DataDir, plan: LaunchPlan) -> list[str]:
    e = cfg.etcd
    ca, _ = data.etcd_cert("ca")
    srv_crt, srv_key = data.etcd_cert("server")
    peer_crt, peer_key = data.etcd_cert("peer")
    args: dict[str, str] = {
        "name": plan.name,
        "data-dir": str(data.etcd),
        "listen-client-urls": cfg.client_url,
        "advertise-client-urls": cfg.client_url,
        "listen-peer-urls": cfg.peer_url,
        "initial-advertise-peer-urls": cfg.peer_url,
        "client-cert-auth": "true",
        "trusted-ca-file": str(ca),
        "cert-file": str(srv_crt),
        "key-file": str(srv_key),
        "peer-client-cert-auth": "true",
        "peer-trusted-ca-file": str(ca),
        "peer-cert-file": str(peer_crt),
        "peer-key-file": str(peer_key),
        "strict-reconfig-check": "true",
        "cipher-suites": CIPHER_SUITES,
        # pre-vote keeps a partitioned member from forcing a disruptive election on heal
        "pre-vote": "true",
    }
    if plan.initial_cluster:
        args["initial-cluster"] = plan.initial_cluster
        args["initial-cluster-state"] = plan.state or "new"
        if plan.cluster_token:
            args["initial-cluster-token"] = plan.cluster_token
    if e.quota_backend_bytes:
        args["quota-backend-bytes"] = str(e.quota_backend_bytes)
    args.update(cfg.spec.maintenance.etcd_args())
    for k, v in e.extra_args.items():
        if k == "name":
            continue  # the plan already carries the resolved name
        args[k] = v
    return [f"--{k}={v}" for k, v in args.items()]


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            return "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# What etcd says when it cannot run for a reason an operator must fix (lowercase fragments,
# most specific first) -> the cause as we name it.
FATAL_CAUSES: tuple[tuple[str, str], ...] = (
    ("no space left on device", "no space left on device"),
    ("permission denied", "permission denied"),
    ("address already in use", "address already in use"),
    ("cluster id mismatch", "cluster ID mismatch"),
    ("corrupt", "data corruption"),
    ("crc mismatch", "data corruption (WAL CRC mismatch)"),
    ("checksum mismatch", "data corruption (checksum mismatch)"),
    ("too many open files", "too many open files"),
    ("read-only file system", "read-only file system"),
)


def fatal_cause(text: str) -> str | None:
    """The first known fatal cause etcd names in text, or None."""
    low = text.lower()
    return next((cause for fragment, cause in FATAL_CAUSES if fragment in low), None)


def last_run_output(path: Path, head: int = 6, tail: int = 14) -> str:
    """What etcd printed in its last run: the first lines (where flag and config errors are)
    and the last ones (where a crash is), without our own start marker. Lines in between that
    name a known fatal cause are kept too: an elision must never hide why etcd died."""
    lines = log_tail(path, 400).splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("--- etcdward: starting etcd")]
    run = lines[starts[-1] + 1:] if starts else lines
    if len(run) <= head + tail:
        return "\n".join(run)
    middle = run[head:len(run) - tail]
    kept = [line for line in middle if fatal_cause(line)][-4:]
    out = [*run[:head]]
    if len(middle) > len(kept):
        out.append(f"... ({len(middle) - len(kept)} lines) ...")
    out += [*kept, *run[-tail:]]
    return "\n".join(out)


@dataclass
class Supervisor:
    binary: str
    args: list[str]
    data: DataDir
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    _stopping: bool = False
    _restart_asked: bool = False
    _started_at: float = 0.0
    _fast_crashes: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_FAST_CRASHES))
    metrics: Metrics | None = None  # the controller's: counts the restarts

    def _count_restart(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.etcd_restarts.labels(reason).inc()

    def kill_leftover(self) -> None:
        """A previous controller may have died leaving its etcd behind (no PDEATHSIG on
        some kernels / when started by hand): terminate it if it runs on our data dir.

        Only while this process holds the data-dir lock (datalock): then no live controller
        owns that etcd, and its cmdline with our --data-dir= proves it is ours. Without the
        lock, the "leftover" may be the etcd of a controller that is running right now."""
        pid = localstate.read_etcd_pid(self.data)
        if pid is not None and runs_on_data_dir(pid, self.data):
            if not datalock.held_by_this_process(self.data):
                raise SupervisorGaveUp(f"etcd (pid {pid}) already runs on {self.data.etcd} and this process "
                                       "does not hold the data-dir lock; not killing it, not starting another")
            log.warning("terminating leftover etcd (pid %d) from a previous run", pid)
            os.kill(pid, signal.SIGKILL)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                    break
                time.sleep(0.1)

    async def start(self) -> None:
        self.kill_leftover()
        self.data.logs.mkdir(parents=True, exist_ok=True)
        logf = self.data.etcd_log.open("ab")
        try:
            try:
                logf.write(f"--- etcdward: starting etcd {' '.join(self.args)}\n".encode())
                logf.flush()
            except OSError as e:
                e.filename = e.filename or str(self.data.etcd_log)
                raise
            self.proc = await asyncio.create_subprocess_exec(
                self.binary, *self.args, stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=logf,
                preexec_fn=_set_pdeathsig, start_new_session=True,
            )
        finally:
            logf.close()
        self._started_at = time.monotonic()
        localstate.write_etcd_pid(self.data, self.proc.pid)
        log.info("etcd started (pid %d), log %s", self.proc.pid, self.data.etcd_log)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def run(self) -> None:
        """Keep etcd running until stop(); raise SupervisorGaveUp/MemberWasRemoved."""
        if not self.alive():
            await self.start()
        while not self._stopping:
            assert self.proc is not None
            rc = await self.proc.wait()
            if self._stopping:
                return
            if self._restart_asked:  # restart(): not a crash, start again at once
                self._restart_asked = False
                self._count_restart("requested")
                await self.start()
                continue
            lived = time.monotonic() - self._started_at
            # Only this run's output counts: the log file outlives resets and rejoins, and an old
            # "removed" line must not tombstone a member that is alive.
            this_run = last_run_output(self.data.etcd_log, head=0, tail=40)
            if any(m in this_run for m in REMOVED_MARKERS):
                raise MemberWasRemoved("etcd says this member has been permanently removed from the cluster")
            if lived < FAST_CRASH_SECONDS:
                self._fast_crashes.append(time.monotonic())
            else:
                self._fast_crashes.clear()
            if len(self._fast_crashes) >= MAX_FAST_CRASHES:
                output = last_run_output(self.data.etcd_log)
                cause = fatal_cause(output)
                raise SupervisorGaveUp(
                    f"etcd exited {MAX_FAST_CRASHES} times within {FAST_CRASH_SECONDS:.0f}s of starting "
                    f"(last exit code {rc})" + (f": {cause}" if cause else "")
                    + f"; last lines of {self.data.etcd_log}:\n{output}")
            delay = BACKOFF[min(len(self._fast_crashes), len(BACKOFF) - 1)]
            self.restarts += 1
            self._count_restart("crash")
            log.warning("etcd exited with code %s after %.1fs; restart #%d in %.1fs", rc, lived, self.restarts, delay)
            await asyncio.sleep(delay)
            if not self._stopping:
                await self.start()

    async def restart(self, grace: float = STOP_GRACE) -> None:
        """Stop etcd (SIGTERM, SIGKILL after grace) and have run() start it again at once."""
        p = self.proc
        if p is None or p.returncode is not None or self._stopping:
            return
        self._restart_asked = True
        log.info("restarting etcd (pid %d)", p.pid)
        p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(p.wait(), grace)
        except asyncio.TimeoutError:
            p.kill()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        self._stopping = True
        p = self.proc
        if p is None or p.returncode is not None:
            return
        log.info("stopping etcd (pid %d)", p.pid)
        p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(p.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("etcd did not stop within %.0fs; sending SIGKILL", grace)
            p.kill()
            await p.wait()
        localstate.clear_etcd_pid(self.data)


def runs_on_data_dir(pid: int, data: DataDir) -> bool:
    """Is pid a live process whose command line names this data dir's etcd/ (`--data-dir=`)?"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--data-dir={data.etcd}".encode() in argv and not _is_zombie(pid)


def etcd_processes(data: DataDir) -> list[int]:
    """Every live process on this machine that runs etcd on this data dir (pid file or not)."""
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return sorted(pid for pid in pids if pid != os.getpid() and runs_on_data_dir(pid, data))


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True
