"""Test harness: real `etcdward controller` processes on unique loopback addresses.

Each node gets its own 127.a.b.c address (peer 2380 and API 9443 on it), a free client port on
127.0.0.1 and a data dir under the test's tmp dir. Every process is tracked and killed at
teardown, including the etcd child (via its pid file), so no test leaves an orphan. Starting,
stopping and killing is etcdward.procs.ControllerProcess; Node adds the config and the clients.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from httpx import HTTPError as _HTTPError

from etcdward.procs import ControllerProcess, deep_merge, free_port, loopback_address, running, wait_gone
from etcdward.store import Member, Store, local_store
from etcdward.store import errors as E

_addr_counter = itertools.count(int.from_bytes(os.urandom(2), "big") % 5000)
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
_running = running  # the name the tests import


# 127.77.x.y: away from 127.0.0.x used by `etcdward up` and a package etcd on 127.0.0.1, and
# from 127.78 (bench/). Each xdist worker gets its own second octet (77, 79, 80, ...): blocks
# chosen by pid alone can overlap between two workers whose pids are neighbours.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
SECOND_OCTET = 77 if _WORKER == 0 else 78 + _WORKER


def next_address() -> str:
    return loopback_address(SECOND_OCTET, next(_addr_counter))


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


@dataclass
class Node(ControllerProcess):
    name: str
    root: Path
    address: str = field(default_factory=next_address)
    client_port: int = field(default_factory=free_port)
    extra_config: dict[str, Any] = field(default_factory=dict)
    use_name: bool = True  # set extraArgs.name (False: the name comes from the hostname)
    proc: subprocess.Popen[bytes] | None = None
    wrapper: list[str] = field(default_factory=list)  # e.g. ["unshare", "--uts", ...]
    env: dict[str, str] = field(default_factory=dict)
    log_suffix = ".controller.log"

    @property
    def peer_url(self) -> str:
        return f"https://{self.address}:2380"

    def config(self) -> dict[str, Any]:
        etcd: dict[str, Any] = {"peerAddress": self.address, "clientPort": self.client_port}
        if self.use_name:
            etcd["extraArgs"] = {"name": self.name}
        cfg: dict[str, Any] = {"spec": {"api": {"address": self.address},
                                        "storage": {"etcd": etcd}, "reconciler": {"leaseTTL": 4}}}
        deep_merge(cfg, self.extra_config)
        return cfg

    def start(self, token: str | None = None, *args: str, token_file: Path | None = None) -> None:
        assert not self.alive(), f"{self.name} is already running"
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config(self.config())
        argv = self.controller_argv(token, *args, token_file=token_file)
        shown = ["<token>" if a == token else a for a in argv[-6:]]  # keep secrets out of logs
        self.launch(argv, banner=f"\n=== start {' '.join(shown)}\n")

    def store(self, timeout: float = 3.0) -> Store:
        return local_store(self.data, self.client_port, timeout=timeout)

    def members(self) -> list[Member]:
        async def go() -> list[Member]:
            async with self.store() as st:
                return await st.members()

        return run_async(go())

    def status(self) -> Any:
        async def go() -> Any:
            async with self.store() as st:
                return await st.status()

        return run_async(go())

    def is_ready(self) -> bool:
        async def go() -> bool:
            async with self.store(timeout=2) as st:
                await st.ready()
                return True

        try:
            return run_async(go())
        except (E.StoreError, OSError):
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_for(self.is_ready, timeout, f"{self.name} ready", node=self)

    def cli(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "etcdward", *args], capture_output=True, text=True, input=input,
                           timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"etcdward {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def token(self, expiry: str = "1h") -> str:
        return self.cli("token", "create", "--role", "controller", "--expiry", expiry,
                        "--data-dir", str(self.data.root)).stdout.strip()

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        ca, _ = self.data.etcd_cert("ca")
        crt, key = self.data.etcd_cert("client")
        return subprocess.run(
            [ETCDCTL, f"--endpoints=https://127.0.0.1:{self.client_port}", f"--cacert={ca}", f"--cert={crt}",
             f"--key={key}", *args], capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})


def wait_for(cond: Any, timeout: float, what: str, node: Node | None = None, interval: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except (AssertionError, E.StoreError, OSError, _HTTPError) as e:
            last_exc = e
        time.sleep(interval)
    tail = "\n".join(node.log().splitlines()[-40:]) if node else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})\n{tail}")


class Cluster:
    """A set of nodes under one tmp dir; `teardown()` kills everything it started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []

    def node(self, name: str, **kw: Any) -> Node:
        n = Node(name, self.root, **kw)
        self.nodes.append(n)
        return n

    def bootstrap(self, name: str = "n1", **kw: Any) -> Node:
        n = self.node(name, **kw)
        n.start()
        n.wait_ready(60)
        wait_for(lambda: _api_up(n), 30, f"{name} join API")
        return n

    def voters(self, via: Node) -> set[str]:
        return {m.name for m in via.members() if m.started and not m.is_learner}

    def wait_voters(self, via: Node, names: set[str], timeout: float = 90.0) -> None:
        wait_for(lambda: self.voters(via) == names and len(via.members()) == len(names), timeout,
                 f"voters == {sorted(names)}", node=via)

    def teardown(self) -> None:
        for n in self.nodes:
            n.kill9()
        for n in self.nodes:
            leftover = n.etcd_pid()
            if leftover:
                os.kill(leftover, signal.SIGKILL)
                wait_gone(leftover)


def _api_up(n: Node) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((n.address, 9443)) == 0
