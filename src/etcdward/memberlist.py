"""The one reader of the etcd member list in a controller process.

etcd has no watch for membership, so the list has to be polled. Instead of every loop calling
MemberList on its own timer, one task reads it and serves the latest list to all consumers:

    MemberListReader.run()        reads the list every `idle` seconds, every `fast` seconds while
                                  a consumer holds `quick()` (the reconciler leader: an
                                  `etcdctl member remove` behind its back shows within ~0.25 s)
    MemberListReader.changed(v)   waits until the list differs from version v; returns the new
                                  version (0: nothing read yet)
    MemberListReader.notify(ev)   sets ev on every change
    MemberListReader.latest       the last list read (None until the first read)

A consumer that acts on the list still reads it fresh (the member list is the truth); this
owner only tells it when to look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from .heartbeats import ETCD_CALL, Heartbeats
from .store import Member, Store
from .store import errors as E

log = logging.getLogger(__name__)

IDLE = 5.0  # nobody needs quick news: a removed member's own etcd stops by itself anyway
FAST = 0.25  # while the reconciler leads


def _shape(members: list[Member]) -> tuple[tuple[int, str, bool, tuple[str, ...]], ...]:
    return tuple(sorted((m.id, m.name, m.is_learner, m.peer_urls) for m in members))


class MemberListReader:
    def __init__(self, store: Store, idle: float = IDLE, fast: float = FAST,
                 heartbeats: Heartbeats | None = None) -> None:
        self.store = store
        self.heartbeats = heartbeats or Heartbeats()
        self.idle, self.fast = idle, fast
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

    async def _read_and_wait(self) -> None:
        """One read of the list (consumers told of a change), then the wait until the next."""
        try:
            # the local member's view: a signal of when to look, 4 times a second while the
            # reconciler leads, must not cost a quorum round each (consumers read it linearizably)
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
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: never swallows a cancel (tasks.py)
            async with asyncio.timeout(self.fast if self._quick else self.idle):
                await self._kick.wait()
