"""The process's one member-list reader and what wakes the reconciler (no etcd: a counting fake)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from etcdward.etcdlogwatch import EtcdLogWatch, logs_membership
from etcdward.keys import ALIVE, ETCDMEMBERS, JOIN_QUEUE, JOINS, RECONCILER_LEADER, TOKENS
from etcdward.memberlist import MemberListReader
from etcdward.reconcile.loop import wakes_reconciler
from etcdward.store import Member, WatchEvent
from etcdward.store import errors as E


class FakeStore:
    def __init__(self) -> None:
        self.members_now = [Member(1, "n1", ("https://a:2380",), (), False)]
        self.calls = 0
        self.fail = False

    async def members(self, linearizable: bool = True) -> list[Member]:
        assert not linearizable  # a poll: the local member's view, no quorum round each time
        self.calls += 1
        if self.fail:
            raise E.Unavailable("member list: down")
        return list(self.members_now)


def test_reader_polls_slowly_unless_asked_and_announces_changes() -> None:
    async def go() -> None:
        store = FakeStore()
        reader = MemberListReader(store, idle=10.0, fast=0.01)  # type: ignore[arg-type]
        task = asyncio.create_task(reader.run())
        v1 = await asyncio.wait_for(reader.changed(0), 1)
        await asyncio.sleep(0.1)
        assert store.calls == 1  # idle: no second read within 10 s
        wake = asyncio.Event()
        with reader.quick():
            notifier = asyncio.create_task(reader.notify(wake))
            await asyncio.sleep(0.1)
            assert store.calls > 3  # quick: every 10 ms
            assert not wake.is_set()  # the same list is no news
            store.fail = True
            await asyncio.sleep(0.05)
            assert reader.latest is not None  # a failed read keeps the last list
            store.fail = False
            store.members_now = store.members_now[:0]
            await asyncio.wait_for(wake.wait(), 1)
        assert reader.version == v1 + 1 and reader.latest == []
        notifier.cancel()
        task.cancel()
        await asyncio.gather(task, notifier, return_exceptions=True)

    asyncio.run(go())


def test_a_write_to_the_etcd_log_triggers_the_read_not_a_timer(tmp_path: Path) -> None:
    async def go(use_inotify: bool) -> None:
        store = FakeStore()
        etcd_log = tmp_path / f"etcd-{use_inotify}.log"
        etcd_log.write_text("started\n")
        watch = EtcdLogWatch(etcd_log, look=0.01, use_inotify=use_inotify)
        reader = MemberListReader(store, idle=10.0, fast=0.05, log_watch=watch)  # type: ignore[arg-type]
        tasks = [asyncio.create_task(watch.run()), asyncio.create_task(reader.run())]
        wake = asyncio.Event()
        with reader.quick():
            tasks.append(asyncio.create_task(reader.notify(wake)))
            await asyncio.sleep(0.3)
            calls = store.calls
            assert calls <= 3  # the first read, the one quick() asks for, the watch starting: no poll
            store.members_now = []
            with etcd_log.open("a") as f:  # what etcd writes when it applies a removal
                f.write("etcdserver/membership: removed member 1 from cluster 2\n")
            await asyncio.wait_for(wake.wait(), 1)
            assert store.calls == calls + 1
            for _ in range(20):  # a chatty log: reads at most every `fast` seconds
                with etcd_log.open("a") as f:
                    f.write("rafthttp: rejected the stream from peer 1 since it was removed\n")
                await asyncio.sleep(0.01)
            assert store.calls <= calls + 1 + 0.2 / 0.05 + 1
            etcd_log.unlink()  # removed by hand: the supervisor's next start writes a new one
            await asyncio.sleep(0.1)
            etcd_log.write_text("etcd started again\n")
            before = store.calls
            await wait_until(lambda: store.calls > before)
        await asyncio.sleep(0.2)
        idle_calls = store.calls
        await asyncio.sleep(0.2)
        assert store.calls == idle_calls  # no write, nobody quick: no read before `idle`
        with etcd_log.open("a") as f:
            f.write("nobody holds quick(): a write is still the cue (a follower sees its removal)\n")
        await wait_until(lambda: store.calls == idle_calls + 1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(go(use_inotify=True))
    asyncio.run(go(use_inotify=False))


def test_an_etcd_whose_extra_args_move_or_quiet_its_log_is_polled_instead() -> None:
    assert logs_membership({}) and logs_membership({"log-level": "debug", "logger": "zap"})
    assert logs_membership({"log-outputs": "stderr,/var/log/etcd.log"})  # still in logs/etcd.log too
    assert not logs_membership({"log-outputs": "/var/log/etcd.log"})
    assert not logs_membership({"log-output": "systemd/journal"})
    assert not logs_membership({"log-level": "warn"}) and not logs_membership({"log-level": "ERROR"})
    assert not logs_membership({"log-package-levels": "etcdserver/membership=WARNING"})


async def wait_until(cond, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time")


def _ev(key: str, kind: str = "put", create: int = 5, mod: int = 5) -> WatchEvent:
    return WatchEvent(kind, key, b"{}", mod, create)


def test_what_wakes_the_reconciler() -> None:
    assert wakes_reconciler(_ev(ETCDMEMBERS + "n1", mod=9))
    assert wakes_reconciler(_ev(JOINS + "ab", mod=9))
    assert wakes_reconciler(_ev(RECONCILER_LEADER, "delete"))
    assert wakes_reconciler(_ev(ALIVE + "ab"))  # a controller came alive
    assert wakes_reconciler(_ev(ALIVE + "ab", "delete"))  # its lease expired
    assert not wakes_reconciler(_ev(ALIVE + "ab", create=5, mod=9))  # a live one rewrote its figures
    assert not wakes_reconciler(_ev(TOKENS + "x"))
    assert not wakes_reconciler(_ev(JOIN_QUEUE + "x"))


def test_moved_within_waits_for_a_line_then_settles_or_gives_up(tmp_path: Path) -> None:
    """The cue maintenance and the version pin wait for: a line, then `settle` seconds (True);
    no line within `timeout`: False."""
    async def go() -> None:
        etcd_log = tmp_path / "etcd.log"
        etcd_log.write_text("started\n")
        watch = EtcdLogWatch(etcd_log, look=0.01)
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.05)
        seen = watch.version
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert not await watch.moved_within(seen, 0.1, settle=5.0)
        assert loop.time() - t0 < 1.0
        def write_a_line() -> None:
            with etcd_log.open("a") as f:
                f.write("a line\n")

        loop.call_later(0.05, write_a_line)
        t0 = loop.time()
        assert await watch.moved_within(seen, 5.0, settle=0.2)
        assert 0.2 <= loop.time() - t0 < 2.0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
