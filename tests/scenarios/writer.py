"""The continuous writer of invariant 4."""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from .common import WRITES, ScenarioError
from .host import Host

if TYPE_CHECKING:
    from .harness import World


class Writer(threading.Thread):
    """Writes /scenario/writes/<seq> through whichever host answers, one at a time, and
    records which writes etcd ACKNOWLEDGED.  Never reuses a sequence number, so a write that
    timed out (and may or may not have landed) cannot be confused with an acknowledged one.
    Stops by itself after `max_seconds`."""

    def __init__(self, world: "World", interval: float = 0.25, max_seconds: float = 900.0) -> None:
        super().__init__(name=f"writer-{world.name}", daemon=True)
        self.world = world
        self.interval = interval
        self.max_seconds = max_seconds
        self.acked: dict[int, str] = {}  # seq -> node that acknowledged it
        self.failed = 0
        self.seq = 0
        self._halt = threading.Event()
        self._rr = 0

    def _candidates(self) -> list[Host]:
        hosts = [h for h in self.world.hosts.values() if h.alive() and h.has_db()]
        if not hosts:
            return []
        self._rr = (self._rr + 1) % len(hosts)
        return hosts[self._rr:] + hosts[:self._rr]

    def run(self) -> None:
        end = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < end:
            for h in self._candidates():
                if self._halt.is_set():
                    break
                self.seq += 1
                key = f"{WRITES}{self.seq:08d}"
                p = h.etcdctl("put", key, f"{self.seq} via {h.node}", timeout=3)
                if p.returncode == 0 and p.stdout.strip() == "OK":
                    self.acked[self.seq] = h.node
                    break
                self.failed += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(30)

    def present(self, host: Host) -> set[int]:
        p = host.etcdctl("get", "--consistency=l", "--prefix", "--keys-only", WRITES, timeout=20)
        if p.returncode != 0:
            raise ScenarioError(f"{host.node}: cannot read back {WRITES}: {p.stderr.strip()[-300:]}")
        return {int(k[len(WRITES):]) for k in p.stdout.split() if k.startswith(WRITES)}
