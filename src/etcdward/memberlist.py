"""The one reader of the etcd member list in a controller process.

etcd has no watch for membership, so the list has to be polled. Instead of every loop calling
MemberList on its own timer, one task reads it and serves the latest list to all consumers:

    MemberListReader.run()        reads the list every `idle` seconds; while a consumer holds
                                  `quick()` (the reconciler leader) also as soon as the local
                                  etcd's log grows (see below), or every `fast` seconds when
                                  there is no log to look at
    MemberListReader.changed(v)   waits until the list differs from version v; returns the new
                                  version (0: nothing read yet)
    MemberListReader.notify(ev)   sets ev on every change
    MemberListReader.latest       the last list read (None until the first read)

Why the log: every member's etcd writes lines to its log when it applies a membership change
(raft's "switched to configuration", "added member", "removed member"; a new member's peer
connecting), on every supported version and log format, and an idle etcd writes almost
nothing. Looking at the log's size every LOOK seconds costs one stat and no etcd call, where
polling MemberList 4 times a second was most of the etcd load a leader's controller caused. Any
growth triggers a read (at most one per `fast` seconds: a chatty log costs what the old poll
did); the `idle` read stays as the safety net. An `etcdctl member remove` behind our back
still shows within ~0.1-0.2 s.

A consumer that acts on the list still reads it fresh (the member list is the truth); this
owner only tells it when to look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .heartbeats import ETCD_CALL, Heartbeats
from .store import Member, Store
from .store import errors as E

log = logging.getLogger(__name__)

IDLE = 5.0  # nobody needs quick news: a removed member's own etcd stops by itself anyway
FAST = 0.25  # while the reconciler leads: the poll without a log, the least gap between reads with one
LOOK = 0.1  # while the reconciler leads: how often the etcd log's size is looked at


def log_mark(etcd_log: Path | None) -> tuple[int, int] | None:
    """Where the local etcd's log stands (inode, size): a different mark means etcd wrote
    something (or the file was replaced). None: no log to look at."""
    if etcd_log is None:
        return None
    try:
        st = os.stat(etcd_log)
    except OSError:
        return None
    return st.st_ino, st.st_size


def _shape(members: list[Member]) -> tuple[tuple[int, str, bool, tuple[str, ...]], ...]:
    return tuple(sorted((m.id, m.name, m.is_learner, m.peer_urls) for m in members))


class MemberListReader:
    def __init__(self, store: Store, idle: float = IDLE, fast: float = FAST,
                 heartbeats: Heartbeats | None = None, etcd_log: Path | None = None, look: float = LOOK) -> None:
        self.store = store
        self.heartbeats = heartbeats or Heartbeats()
        self.idle, self.fast, self.look = idle, fast, look
        self.etcd_log = etcd_log  # the local etcd's stdout/stderr (the supervisor's), None: poll
        self.latest: list[Member] | None = None
        self.version = 0
        self._quick = 0  # consumers that need quick news now
        self._news = asyncio.Condition()
        self._kick = asyncio.Event()  # a consumer asked for quick news: read now, not at the next idle tick

    @contextlib.contextmanager
    def quick(self) -> Iterator[None]:
        """Read every `fast` seconds while this is held."""
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

    def _log_mark(self) -> tuple[int, int] | None:
        return log_mark(self.etcd_log)

    async def _read_and_wait(self) -> None:
        """One read of the list (consumers told of a change), then the wait until the next."""
        mark = self._log_mark()  # before the read: a line written during it triggers the next
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
        await self._wait(read_at, mark)

    async def _wait(self, read_at: float, mark: tuple[int, int] | None) -> None:
        """Until a consumer asks (quick() begins), `idle` has passed, or, while quick: the log
        moved (and `fast` passed since the last read), or `fast` passed when there is no log."""
        while True:
            quick = self._quick > 0
            watching = quick and mark is not None
            since = time.monotonic() - read_at
            if watching and since >= self.fast and self._log_mark() != mark:
                return
            due = self.fast if quick and not watching else self.idle
            if since >= due:
                return
            step = due - since
            if watching:
                step = min(step, max(self.look, self.fast - since))
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: never swallows a cancel (tasks.py)
                async with asyncio.timeout(step):
                    await self._kick.wait()
                    return
