"""Heartbeats of the controller's long-running loops, for /livez (health.py).

Each loop registers once (`Heartbeats.loop(name, every, work)`) and calls `beat()` every time it
goes round. A loop is stalled when its last beat is older than its bound:

    bound = 3 * every + work

`every` is how long the loop sleeps between rounds, `work` the longest one round may take when
nothing is wrong with the controller (its etcd calls' timeouts, a backup it waits for): a slow
or unavailable etcd is /readyz's business, so only a loop that stopped going round - a
deadlock, a wait that never ends - fails /livez. Before a longer wait it knows about (a cool-down,
a backup), a loop says so: `beat(next_in=seconds)`. A loop that ends unregisters (`with`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

ETCD_CALL = 5.0  # one etcd call's longest time (the local store's timeout): loops count their calls in `work`


@dataclass
class Heartbeat:
    name: str
    every: float
    work: float
    clock: Callable[[], float] = time.monotonic
    last: float = 0.0
    due: float = 0.0  # the loop is stalled once the clock passes this

    def __post_init__(self) -> None:
        self.beat()

    @property
    def bound(self) -> float:
        return 3 * self.every + self.work

    def beat(self, next_in: float | None = None) -> None:
        """The loop went round; `next_in`: it knowingly waits this long before the next round."""
        self.last = self.clock()
        self.due = self.last + self.bound + (next_in or 0.0)

    def stalled(self) -> str | None:
        """Why this loop counts as stalled, or None."""
        now = self.clock()
        if now <= self.due:
            return None
        return f"loop {self.name} stalled: no heartbeat for {now - self.last:.1f}s (bound {self.due - self.last:.1f}s)"

    def age(self) -> float:
        return self.clock() - self.last


@dataclass
class Heartbeats:
    """The registry of loop heartbeats of one controller process."""
    clock: Callable[[], float] = time.monotonic
    beats: dict[str, Heartbeat] = field(default_factory=dict)

    def register(self, name: str, every: float, work: float) -> Heartbeat:
        hb = Heartbeat(name, every, work, self.clock)
        self.beats[name] = hb
        return hb

    def unregister(self, hb: Heartbeat) -> None:
        if self.beats.get(hb.name) is hb:
            del self.beats[hb.name]

    @contextmanager
    def loop(self, name: str, every: float, work: float) -> Iterator[Heartbeat]:
        """A heartbeat for the loop running inside the `with`; checked only while it runs."""
        hb = self.register(name, every, work)
        try:
            yield hb
        finally:
            self.unregister(hb)

    def checks(self) -> list[tuple[str, str | None]]:
        """(loop name, why it is stalled or None) for every running loop, by name."""
        return [(name, hb.stalled()) for name, hb in sorted(self.beats.items())]
