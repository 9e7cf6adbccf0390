"""One process at a time may change a data dir (issue 8: a second controller on a running
node's data dir took its etcd for a leftover, killed it and rewrote its PKI and identity).

Every command that changes a data dir takes the lock first, in one line:
`with datalock.acquire(data, "reset"): ...`. It is flock(LOCK_EX|LOCK_NB) on
`<data-dir>/etcdward.lock`: in the root because `reset` removes state/; released by the kernel
when the holder exits, even on kill -9, so never stale; never deleted, since unlink + flock lets
two processes lock two different inodes; its fd is not inheritable, so the etcd child never
outlives its controller holding it. The holder writes "<pid> <what>" into the file so that a
refused process can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import DataDir

_held: set[Path] = set()  # lock files this process holds (see Supervisor.kill_leftover)


@dataclass(frozen=True)
class Holder:
    pid: int | None
    what: str  # "controller", "reset", ...; "another process" when it did not say

    def __str__(self) -> str:
        who = self.what if self.what == "another process" else f"etcdward {self.what}"
        return f"{who} (pid {self.pid if self.pid else 'unknown'})"


class DataDirBusy(Exception):
    def __init__(self, root: Path, holder: Holder) -> None:
        super().__init__(f"data dir {root} is in use by {holder}; stop that process first")
        self.root, self.holder = root, holder


class DataDirLock:
    """A held lock; a context manager that releases it on exit."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            _held.discard(self.path)
            os.close(self._fd)  # closing the only fd drops the flock
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(data: DataDir, what: str) -> DataDirLock:
    """Lock data's root (creating it if missing) or raise DataDirBusy naming the holder.
    OSError (e.g. not writable) is left to the caller to explain."""
    data.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    # A holder may be between flock and writing its pid, or exiting right now: look again for
    # a moment rather than name a pid that is not (or no longer) the holder.
    deadline = time.monotonic() + 1.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _read_holder(fd)
            live = holder is not None and _alive(holder.pid)
            if live or time.monotonic() > deadline:
                named = holder if live and holder else Holder(_pid_from_proc_locks(fd), "another process")
                os.close(fd)
                raise DataDirBusy(data.root, named) from None
            time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
    record = f"{os.getpid()} {what}\n".encode()
    os.pwrite(fd, record, 0)  # overwrite, then cut: a reader never sees an empty file
    os.ftruncate(fd, len(record))
    _held.add(data.lock_file)
    return DataDirLock(fd, data.lock_file)


def holder(data: DataDir) -> Holder | None:
    """Who holds data's lock now (None if nobody); creates nothing."""
    try:
        fd = os.open(data.lock_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free if we can share it; dropped on close
        return None
    except BlockingIOError:
        return _read_holder(fd) or Holder(_pid_from_proc_locks(fd), "another process")
    finally:
        os.close(fd)


def held_by_this_process(data: DataDir) -> bool:
    return data.lock_file in _held


def _read_holder(fd: int) -> Holder | None:
    try:
        pid, what = os.pread(fd, 256, 0).decode(errors="replace").splitlines()[0].split(" ", 1)
        return Holder(int(pid), what.strip() or "another process")
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    return bool(pid) and Path(f"/proc/{pid}").exists()


def _pid_from_proc_locks(fd: int) -> int | None:
    """The kernel's record of the flock holder, for a holder that wrote nothing (not etcdward)."""
    st = os.fstat(fd)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError):
        for f in (line.split() for line in Path("/proc/locks").read_text().splitlines()):
            if len(f) > 5 and f[1] == "FLOCK" and f[5] == key and f[4].isdigit():
                return int(f[4])
    return None
