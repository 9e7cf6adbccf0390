"""`etcdward up`: N local controllers on loopback addresses 127.0.0.(10+i), each with its own
data dir, config and client port. The first bootstraps; the others join in parallel with one
token. Controllers are separate processes (`python -m etcdward controller`), as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

import yaml

from .. import datalock, tokens
from ..config import Config
from ..durations import parse_duration
from ..errors import Permanent
from ..procs import ControllerProcess
from ..store import Member, local_store
from ..store import errors as E

BASE_CLIENT_PORT = 22379  # loopback client ports 22379+i: clear of a package-started etcd on 2379


class PlaygroundError(Permanent):
    """The playground cannot go on; the message says why and where the logs are."""


@dataclass
class PlayNode(ControllerProcess):
    index: int
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    with_token: bool = False  # started to join (not bootstrapped, not restarted)
    stop_timeout = 20.0

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.{10 + self.index}"

    @property
    def client_port(self) -> int:
        return BASE_CLIENT_PORT + self.index

    def write_node_config(self) -> None:
        self.write_config({"spec": {"api": {"address": self.address, "port": 9443},
                                    "storage": {"etcd": {"peerAddress": self.address, "peerPort": 2380,
                                                         "clientPort": self.client_port,
                                                         "extraArgs": {"name": self.name}}}}}, sort_keys=False)

    def start(self, token: str | None = None) -> None:
        self.write_node_config()
        token_file = None
        self.with_token = bool(token)
        if token:
            token_file = self.root / f"{self.name}.token"
            token_file.write_text(token + "\n")
            token_file.chmod(0o600)
        self.launch(self.controller_argv(token_file=token_file))


class Playground:
    def __init__(self, root: Path, n: int, say: Callable[[str], None] = print) -> None:
        if n < 1 or n > 9:
            raise ValueError("--nodes must be between 1 and 9")
        self.root = root.absolute()
        self.nodes = [PlayNode(i, self.root) for i in range(1, n + 1)]
        self.say = say

    async def members(self, node: PlayNode) -> list[Member]:
        async with local_store(node.data, node.client_port, timeout=3) as st:
            return await st.members()

    async def _wait(self, what: str, check: Callable[[], "asyncio.Future[bool]"], timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for n in self.nodes:
                if n.proc and n.proc.poll() is not None:
                    raise PlaygroundError(f"{n.name} exited with code {n.proc.returncode}; see {n.log_file}")
            with contextlib.suppress(E.StoreError, OSError):
                if await check():
                    return
            await asyncio.sleep(0.25)
        raise PlaygroundError(f"timed out waiting for {what}")

    def check_not_running(self) -> None:
        """Refuse before anything is written or started when another `up` (or any controller)
        runs on one of our data dirs; each controller also takes its own lock, this only makes
        the refusal come first and clearly, with the running playground left untouched."""
        for n in self.nodes:
            holder = datalock.holder(n.data)
            if holder:
                raise PlaygroundError(f"data dir {n.data.root} is in use by {holder}; stop the `etcdward up` "
                                   f"running there first or use another --dir")

    async def form(self, timeout: float = 180.0) -> list[Member]:
        self.check_not_running()
        self.root.mkdir(parents=True, exist_ok=True)
        first = self.nodes[0]
        # Members with data restart together: alone, the first one has no quorum to be ready.
        existing = first.data.etcd_db.exists()
        members = [n for n in self.nodes if n.data.etcd_db.exists()] if existing else [first]
        for n in members:
            n.start()
        self.say(f"started {', '.join(n.name for n in members)} "
                 f"{'(existing data)' if existing else f'({first.address}) bootstrapping'}")

        async def first_ready() -> bool:
            async with local_store(first.data, first.client_port, timeout=2) as st:
                await st.ready()
                return True

        await self._wait(f"{first.name} to be ready", first_ready, 60)
        joiners = [n for n in self.nodes if n not in members]
        if joiners:
            token = await self.create_token(first)
            for n in joiners:
                n.start(token)
            self.say(f"started {', '.join(n.name for n in joiners)} (joining in parallel with one token)")
        want = {n.name for n in self.nodes}
        seen: set[str] = set()

        async def formed() -> bool:
            ms = await self.members(first)
            voters = {m.name for m in ms if m.started and not m.is_learner}
            for name in sorted(voters - seen):
                self.say(f"  {name} is a voting member")
            seen.update(voters)
            return voters >= want and len(ms) == len(want)

        await self._wait(f"all {len(want)} nodes to be voting members", formed, timeout)
        return await self.members(first)

    async def create_token(self, node: PlayNode) -> str:
        cfg = Config.model_validate(yaml.safe_load(node.config_file.read_text())).effective()
        async with local_store(node.data, node.client_port) as st:
            bearer, _ = await tokens.create(st, "controller", parse_duration("1h"))
        return tokens.encode(tokens.JoinToken(cfg.api_url, node.data.ca_crt.read_bytes(), bearer))

    async def verify(self) -> None:
        """Every node sees the same member list and cluster ID."""
        views = []
        for n in self.nodes:
            async with local_store(n.data, n.client_port) as st:
                ms = await st.members()
                status = await st.status()
            views.append((status.cluster_id, sorted((m.id, m.name, m.is_learner) for m in ms)))
        if len({v[0] for v in views}) != 1:
            raise PlaygroundError(f"nodes disagree on the cluster ID: {[format(v[0], 'x') for v in views]}")
        if any(v[1] != views[0][1] for v in views):
            raise PlaygroundError("nodes disagree on the member list")

    async def run(self, stop: asyncio.Event, once: bool, formed: Callable[[list[Member]], None]) -> None:
        """Form and verify the cluster, call formed(members), then (unless once) watch the
        controllers until stop is set; a controller that exits is an error. Returns as soon as
        stop is set, in whichever phase."""
        members = await until_set(stop, self.form())
        if members is not None:
            await until_set(stop, self.verify())
        if members is None or stop.is_set():
            return
        formed(members)
        while not once and not stop.is_set():
            dead = [n.name for n in self.nodes if not n.alive()]
            if dead:
                raise PlaygroundError(f"controller(s) {', '.join(dead)} exited; see logs in {self.root}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def stop(self) -> None:
        stopped = 0
        for n in reversed(self.nodes):
            stopped += n.alive()
            rc = n.stop()
            if rc not in (None, 0):
                self.say(f"{n.name} exited with code {rc}; see {n.log_file}")
        if stopped:  # a plain log ends with what happened and where the data stays
            self.say(f"stopped {stopped} controller(s); data and logs are kept in {self.root} "
                     f"(`etcdward up --dir {self.root}` starts them again)")


T = TypeVar("T")


async def until_set(stop: asyncio.Event, work: Coroutine[Any, Any, T]) -> T | None:
    """work's result, or None when stop is set first (work is then cancelled)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return None if task.cancelled() else task.result()
