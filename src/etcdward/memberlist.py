"""The one reader of the etcd member list in a controller process.

etcd has no watch for membership, so the list has to be polled. Instead of every loop calling
MemberList on its own timer, one task reads it and serves the latest list to all consumers:

    MemberListReader.run()        reads the list as soon as the local etcd writes to its log
                                  (see below; at most every `fast` seconds), and every `idle`
                                  seconds as the safety net (IDLE_WITH_LOG with a log watch,
                                  IDLE without); without a log watch, also every `fast`
                                  seconds while a consumer holds `quick()` (the reconciler leader)
    MemberListReader.changed(v)   waits until the list differs from version v; returns the new
                                  version (0: nothing read yet)
    MemberListReader.notify(ev)   sets ev on every change
    MemberListReader.latest       the last list read (None until the first read)

Why the log (etcdlogwatch.py): every member's etcd logs each membership change it applies, and
an idle etcd writes almost nothing, so a write to the log is the cue to read the list; polling
MemberList 4 times a second was most of the etcd load a leader's controller caused. A read
follows a write at most every `fast` seconds (a chatty log costs what the old poll did); the
`idle` read stays as the safety net. An `etcdctl member remove` behind our back shows within
~0.1 s.

A consumer that acts on the list still reads it fresh (the member list is the truth); this
owner only tells it when to look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from .etcdlogwatch import EtcdLogWatch
from .heartbeats import ETCD_CALL, Heartbeats
from .store import Member, Store
from .store import errors as E

log = logging.getLogger(__name__)

IDLE = 5.0  # without a log watch, and nobody needs quick news: a removed member's etcd stops by itself anyway
IDLE_WITH_LOG = 15.0  # the safety net's read where the etcd log cues every change
FAST = 0.25  # while the reconciler leads: the poll without a log watch, the least gap between reads with one


def _shape(members: list[Member]) -> tuple[tuple[int, str, bool, tuple[str, ...]], ...]:
    return tuple(sorted((m.id, m.name, m.is_learner, m.peer_urls) for m in members))


class MemberListReader:
    def __init__(self, store: Store, idle: float | None = None, fast: float = FAST,
                 heartbeats: Heartbeats | None = None, log_watch: EtcdLogWatch | None = None) -> None:
        """idle: the safety net's period; by default IDLE_WITH_LOG with a log watch, IDLE without."""
        self.store = store
        self.heartbeats = heartbeats or Heartbeats()
        self.idle = idle if idle is not None else IDLE_WITH_LOG if log_watch is not None else IDLE
        self.fast = fast
        self.log_watch = log_watch  # the local etcd's log (None: poll every `fast` while quick)
        self.latest: list[Member] | None = None
        self.version = 0
        self._quick = 0  # consumers that need quick news now
        self._news = asyncio.Condition()
        self._kick = asyncio.Event()  # a consumer asked for quick news: read now, not at the next idle tick

    @contextlib.contextmanager
    def quick(self) -> Iterator[None]:
        """Quick news while this is held: a read now, and every `fast` seconds where there is
        no log watch (with one, every write to the etcd log is read after, held or not)."""
        self._quick += 1
        self._kick.set()
        try:
            yield
        finally:
            self._quick -= 1

    async def changed(self, since: int) -> int:
        async with self._news:
            await self._news.wait_for(lambda: self.version != since)
            return self.version

    async def notify(self, wake: asyncio.Event) -> None:
        """Set `wake` on every change of the list, until cancelled."""
        version = self.version
        while True:
            version = await self.changed(version)
            wake.set()

    async def run(self) -> None:
        with self.heartbeats.loop("member-list", every=self.idle, work=ETCD_CALL) as hb:
            while True:
                hb.beat()
                await self._read_and_wait()

    async def _read_and_wait(self) -> None:
        """One read of the list (consumers told of a change), then the wait until the next."""
        seen = self.log_watch.version if self.log_watch else 0  # before the read: a line during it counts
        read_at = time.monotonic()
        try:
            # the local member's view: a signal of when to look, quickly while the reconciler
            # leads, must not cost a quorum round each (consumers read it linearizably)
            members = await self.store.members(linearizable=False)
        except E.StoreError as e:
            log.debug("member list: %s", e)
        else:
            if self.latest is None or _shape(members) != _shape(self.latest):
                async with self._news:
                    self.latest, self.version = members, self.version + 1
                    self._news.notify_all()
            else:
                self.latest = members
        self._kick.clear()
        await self._wait(read_at, seen)

    async def _wait(self, read_at: float, seen: int) -> None:
        """Until a consumer asks (quick() begins), `idle` has passed, etcd wrote to its log (and
        `fast` passed since the last read), or, while quick without a log watch, `fast` passed."""
        while True:
            quick, logs = self._quick > 0, self.log_watch
            since = time.monotonic() - read_at
            wrote = logs is not None and logs.version != seen
            if wrote and since >= self.fast:
                return
            due = self.fast if quick and logs is None else self.idle
            if since >= due:
                return
            waits = {asyncio.ensure_future(self._kick.wait())}
            if logs is not None:
                if wrote:
                    due = min(due, self.fast)  # read once `fast` has passed
                else:
                    waits.add(asyncio.ensure_future(logs.moved(seen)))
            try:
                await asyncio.wait(waits, timeout=due - since, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if self._kick.is_set():
                return
