"""The one watch of the local etcd's log in a controller process: a counter that moves when etcd
writes to its log, without an etcd call and without a timer.

Every member's etcd writes lines to its log when it applies a membership change (raft's
"switched to configuration", "added member", "removed member", a new member's peer connecting)
or an alarm ("alarm NOSPACE raised by peer"), on every supported version and log format, and an
idle etcd writes almost nothing. So "the log moved" is a cheap signal for "look at the member
list / the alarms now", where polling etcd for them was most of the load an idle leader caused:

    EtcdLogWatch.run()        inotify (IN_MODIFY) on logs/etcd.log, read by the event loop: no
                              wake-up while etcd is silent; where inotify is missing, the
                              file's size and inode are looked at every LOOK seconds instead
    EtcdLogWatch.version      moves on every write seen (0: nothing seen yet)
    EtcdLogWatch.moved(v)     waits until the version differs from v; returns the new one

Consumers still read what they act on from etcd; this only tells them when. An etcd whose
extraArgs send its log elsewhere (`log-outputs`) or drop its INFO lines (`log-level` warn and
above) gives no such cue: `logs_membership` says so, and the controller then polls instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger(__name__)

LOOK = 0.25  # without inotify: how often the log's size is looked at
IN_MODIFY, IN_DELETE_SELF, IN_MOVE_SELF, IN_IGNORED = 0x2, 0x400, 0x800, 0x8000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of name)


QUIET_LEVELS = frozenset({"warn", "warning", "error", "panic", "fatal", "dpanic"})


def logs_membership(extra_args: dict[str, str]) -> bool:
    """Whether the etcd run with these extraArgs writes its membership changes (INFO lines) to
    its stdout/stderr, which the supervisor sends to logs/etcd.log."""
    outputs = extra_args.get("log-outputs", extra_args.get("log-output", "default"))
    targets = {o.strip() for o in outputs.split(",")}
    return bool(targets & {"default", "stderr", "stdout"}) and "log-package-levels" not in extra_args \
        and extra_args.get("log-level", "info").strip().lower() not in QUIET_LEVELS


def log_mark(path: Path) -> tuple[int, int] | None:
    """Where the log stands (inode, size); None: no log."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size


class _Inotify:
    """A non-blocking inotify descriptor watching one file (libc through ctypes: no dependency)."""

    def __init__(self, path: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.path = path
        self.watching = False

    def add_watch(self) -> bool:
        """(Re)watch the path; False while it does not exist."""
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(self.path), IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF)
        self.watching = wd >= 0
        return self.watching

    def drain(self) -> bool:
        """Read every queued event; True if the file is gone from the watch (moved, deleted)."""
        lost = False
        while True:
            try:
                buf = os.read(self.fd, 4096)
            except BlockingIOError:
                return lost
            for off in _offsets(buf):
                _, mask, _, _ = _EVENT.unpack_from(buf, off)
                lost = lost or bool(mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))

    def close(self) -> None:
        os.close(self.fd)


def _offsets(buf: bytes) -> list[int]:
    offs, off = [], 0
    while off + _EVENT.size <= len(buf):
        offs.append(off)
        off += _EVENT.size + _EVENT.unpack_from(buf, off)[3]
    return offs


# From a log line to the look it cues (maintenance's alarm check, the version pin): a line mostly
# comes with work (a membership change) that the reconciler, in the same loop, should do first,
# and a Status call or a TLS handshake beside it delayed that work.
SETTLE = 1.0


class EtcdLogWatch:
    def __init__(self, path: Path, look: float = LOOK, use_inotify: bool = True) -> None:
        self.path = path
        self.look = look
        self.use_inotify = use_inotify
        self.version = 0
        self._news = asyncio.Condition()

    async def moved(self, since: int) -> int:
        async with self._news:
            await self._news.wait_for(lambda: self.version != since)
            return self.version

    async def moved_within(self, since: int, timeout: float, settle: float = SETTLE) -> bool:
        """Until the log moved past `since` and then `settle` seconds passed (True), or `timeout`
        seconds passed without a move (False). See SETTLE."""
        try:
            async with asyncio.timeout(max(0.0, timeout)):  # asyncio.timeout: never swallows a cancel
                await self.moved(since)
        except TimeoutError:
            return False
        await asyncio.sleep(settle)
        return True

    async def _bump(self) -> None:
        async with self._news:
            self.version += 1
            self._news.notify_all()

    async def run(self) -> None:
        watch = None
        if self.use_inotify:
            try:
                watch = _Inotify(self.path)
            except (OSError, AttributeError) as e:  # no inotify (AttributeError: no such libc symbol)
                log.debug("etcd log watch: no inotify (%s); looking every %.2fs", e, self.look)
        if watch is None:
            await self._poll()
            return
        try:
            await self._follow(watch)
        finally:
            with contextlib.suppress(ValueError, RuntimeError):  # the loop may be closing
                asyncio.get_running_loop().remove_reader(watch.fd)
            watch.close()

    async def _follow(self, watch: _Inotify) -> None:
        ready = asyncio.Event()
        asyncio.get_running_loop().add_reader(watch.fd, ready.set)
        while True:
            if not watch.watching:
                if not watch.add_watch():
                    await asyncio.sleep(self.look)  # no log (removed by hand): look for it again
                    continue
                await self._bump()  # a new file: whatever it holds was written unseen
            await ready.wait()
            ready.clear()
            if watch.drain():
                watch.watching = False  # re-added on the next round: the supervisor reopens the path
            await self._bump()

    async def _poll(self) -> None:
        mark = log_mark(self.path)
        while True:
            await asyncio.sleep(self.look)
            now = log_mark(self.path)
            if now != mark:
                mark = now
                await self._bump()
