"""`etcdward backup --save-path DIR` handed to the node's running controller.

The controller already has its store loaded and a connection to its etcd; the CLI would spend
a good part of a second importing and connecting before the snapshot's first byte (bench/backup.py: the
command took 1.2-1.3x `etcdctl snapshot save`, the controller's own backups 1.03x). So the CLI
asks the controller over a Unix socket and passes it the destination directory itself as an
open file descriptor (SCM_RIGHTS). The controller writes into that directory through
/proc/self/fd/N: the directory the operator named, in the CLI's mount namespace, even where a
unit's PrivateTmp or a bind mount would make the path name another.

The socket is an abstract one (no file: nothing in the data dir for a copy, a checksum listing
or a crash to leave behind) named after the data dir's device and inode, `etcdward-backup-
<dev>-<ino>` (socket_name): the same directory under any path spelling, and only in the
controller's network namespace. Both ends check the other's user (SO_PEERCRED): root or their
own; so another user can neither ask for a backup nor pose as the controller.

    CLI -> controller   one JSON line {"dir": DIR made absolute, "savePath": DIR as given} + the directory's fd
    controller -> CLI   {"taking": true} at once, then {"name": archive file name} or
                        {"error": the CLI's error line} when done (one JSON line each)

The CLI hanging up (Ctrl-C) cancels the backup: the controller watches the connection.
The archive is the one the CLI would write (backup/take.py, verified before it gets its name),
and a failure reads the same (failure_line). The CLI takes the backup itself when no controller
takes the request within ACCEPT_WITHIN (none runs, an older one, a stuck one) or the controller
stops before answering (NoController), and when ETCDWARD_BACKUP_IN_PROCESS=1. This module is
the CLI's side, with the standard library alone (the fast path, cli/fastpath.py, runs it without
asyncio or logging); handoff_server.py is the controller's.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

IN_PROCESS = "ETCDWARD_BACKUP_IN_PROCESS"  # set (to anything): the CLI takes its backups itself
MAX_REQUEST = 64 * 1024
TAKING = b'{"taking": true}'  # the controller's first line: it has the request and starts
ACCEPT_WITHIN = 5.0  # seconds from connecting to that line: a stuck controller is not waited for
ANSWER_WITHIN = 700.0  # then to the answer: the snapshot's own bound (600 s) and the checks after it


class NoController(Exception):
    """No controller took the request: the CLI takes the backup itself."""


class BackupFailed(Exception):
    """The controller took the request and the backup failed; str(): the CLI's error line."""


def failure_line(exc: BaseException, data_root: Path, save_path: str) -> str | None:
    """The one line a failed backup prints (CLI or controller), or None: not a backup failure."""
    from ..store import errors as E
    from .archive import ArchiveError, ArchiveExists

    if isinstance(exc, E.StoreError):
        return f"backup failed: etcd of {data_root} is not reachable or failed: {exc}"
    if isinstance(exc, (ArchiveError, ArchiveExists)):
        return f"backup failed: {exc}"
    if isinstance(exc, OSError):
        return f"backup failed: {exc.strerror}: {exc.filename or save_path}"
    return None


def socket_name(data_root: Path) -> str:
    """The abstract socket of the controller of data_root (OSError: no such directory)."""
    st = os.stat(data_root)
    return f"\0etcdward-backup-{st.st_dev:x}-{st.st_ino:x}"


def peer_user(sock: socket.socket) -> int:
    """The user of the process at the other end of a connected Unix socket."""
    import struct

    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(uid)


def trusted(uid: int) -> bool:
    return uid in (0, os.getuid())


# -- the CLI's side -----------------------------------------------------------------------------

def backup_via_controller(data_root: Path, dest: Path, save_path: str) -> Path:
    """The archive the controller of data_root wrote into dest (created if missing, as the CLI
    itself would); NoController when no controller took the request; BackupFailed with the
    error line. Either way the directories it created are gone again (the deepest first, and
    only while empty), so that the CLI taking the backup itself starts from the same place."""
    created = [d for d in (dest, *dest.parents) if not d.exists()]
    try:
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BackupFailed(failure_line(e, data_root, save_path)) from None
        return dest / ask_controller(data_root, dest, save_path)
    except BaseException:
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def ask_controller(data_root: Path, dest: Path, save_path: str) -> str:
    """The archive's file name, written into the directory dest by the controller of data_root;
    NoController when none takes the request (or it stopped before answering), BackupFailed with
    the error line when the backup failed."""
    if os.environ.get(IN_PROCESS):
        raise NoController(f"{IN_PROCESS} is set")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            # A Unix connect succeeds once the connection is queued: a stuck controller is
            # noticed by its missing "taking" line, not by the connect.
            sock.settimeout(ACCEPT_WITHIN)
            sock.connect(socket_name(data_root))
            if not trusted(peer_user(sock)):  # not the controller: someone else took the name
                raise NoController("the backup socket belongs to another user")
            target = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
            try:
                request = json.dumps({"dir": str(dest), "savePath": save_path}).encode() + b"\n"
                socket.send_fds(sock, [request], [target])
            finally:
                os.close(target)
            lines = _lines(sock)
            taking = next(lines, b"")
            if taking != TAKING:
                raise NoController(f"the controller answered {taking[:200]!r}")
            sock.settimeout(ANSWER_WITHIN)
            reply = next(lines, b"")
    except OSError as e:  # no data dir, none listens, a reset, a timeout
        raise NoController(str(e)) from None
    try:
        answer = json.loads(reply)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):  # the controller stopped mid-way: nothing was named
        raise NoController("the controller closed the connection without an answer")
    if isinstance(answer.get("error"), str):
        raise BackupFailed(answer["error"])
    name = answer.get("name")
    if not isinstance(name, str) or "/" in name or not name:
        raise NoController(f"the controller answered {reply[:200]!r}")
    return name


def _lines(sock: socket.socket) -> Iterator[bytes]:
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk or len(buf) > MAX_REQUEST:
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        yield line
