"""Processes for the formation benchmark: addresses, ports, spawning and killing, timing."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etcdward.config import Config
from etcdward.procs import ControllerProcess, deep_merge, free_port, loopback_address, proc_stat

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
POLL = 0.05  # both sides: 50 ms between checks / retries
RUN_TIMEOUT = 180.0

_addr = itertools.count()
EXTRA_CONFIG: dict[str, Any] = {}  # merged into every node's config (formation --backup-before-change)


def next_address() -> str:
    # 127.78.a.b: clear of tests (127.77.x.y) and `etcdward up` (127.0.0.x); per-pid block
    return loopback_address(78, next(_addr), per_block=230)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def cpu_seconds(pid: int) -> float:
    f = proc_stat(pid)
    if not f:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# -- process bookkeeping: everything started is killed at the end ------------------------------

_procs: list[subprocess.Popen[bytes]] = []
roots: list[Path] = []  # temp dirs whose processes kill_all() kills


def tracked_popen(argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(argv, **kw)
    _procs.append(p)
    return p


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return tracked_popen(argv, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL, start_new_session=True, env=env)


def _etcd_pids_under(root: Path) -> list[int]:
    """etcd processes whose --data-dir lies under one of our temp dirs (a controller's etcd)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(b"--data-dir=" + str(root).encode()) for a in argv):
            out.append(int(d.name))
    return out


def kill_all() -> None:
    for p in _procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    for p in _procs:
        with contextlib.suppress(Exception):
            p.wait(10)
    _procs.clear()
    for root in roots:
        for pid in _etcd_pids_under(root):  # a controller's etcd child (own session, PDEATHSIG)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 10
    while any(_etcd_pids_under(r) for r in roots) and time.monotonic() < end:
        time.sleep(0.05)


# -- shared node shape ------------------------------------------------------------------------

@dataclass
class Node(ControllerProcess):
    """A node of either side: the floor uses its data dir and config for a bare etcd; the
    etcdward side starts its controller (tracked, so kill_all() kills it)."""

    name: str
    root: Path
    address: str = field(default_factory=next_address)
    client_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_suffix = ".controller.log"

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        return tracked_popen(argv, **kw)

    @property
    def peer_url(self) -> str:
        return f"https://{self.address}:2380"

    def config_dict(self) -> dict[str, Any]:
        etcd = {"peerAddress": self.address, "clientPort": self.client_port, "extraArgs": {"name": self.name}}
        cfg: dict[str, Any] = {"spec": {"api": {"address": self.address}, "storage": {"etcd": etcd}}}
        deep_merge(cfg, EXTRA_CONFIG)
        return cfg

    def config(self) -> Config:
        return Config.model_validate(self.config_dict()).effective()


@dataclass
class Result:
    kind: str
    n: int
    total: float  # t0 -> all N voting
    n1_ready: float  # t0 -> n1's etcd passes a linearizable read
    after_ready: float  # token ready (etcdward) / n1 healthy (floor) -> all N voting
    py_start: float = 0.0  # etcdward: launch of n1 -> its first log line (Python start-up)
    phases: dict[str, float] = field(default_factory=dict)  # from the leader's etcd log, see phases()
    startup: dict[str, float] = field(default_factory=dict)  # etcdward only, see startup_phases()
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used by the run's processes
    events: list[tuple[float, str]] = field(default_factory=list)
    root: Path | None = None


