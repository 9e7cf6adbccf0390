"""`etcdward backup --save-path DIR` handed to the node's running controller.

The controller already has gRPC loaded and a connection to its etcd; the CLI would spend a
quarter of a second importing both before the snapshot's first byte (bench/backup.py: the
command took 1.2-1.3x `etcdctl snapshot save`, the controller's own backups 1.03x). So the CLI
asks the controller, over a Unix socket in the data dir (state/backup.sock, 0600: root and the
controller's user only, checked again with SO_PEERCRED), and passes it the destination
directory itself as an open file descriptor (SCM_RIGHTS). The controller writes into that
directory through /proc/self/fd/N: the directory the operator named, in the CLI's mount
namespace, even where a unit's PrivateTmp or a bind mount would make the path name another.

    CLI -> controller   one JSON line {"dir": DIR made absolute, "savePath": DIR as given} + the directory's fd
    controller -> CLI   {"taking": true} at once, then {"name": archive file name} or
                        {"error": the CLI's error line} when done (one JSON line each)

The CLI hanging up (Ctrl-C) cancels the backup: the controller watches the connection.
The archive is the one the CLI would write (backup/take.py, verified before it gets its name),
and a failure reads the same (failure_line). The CLI takes the backup itself when no controller
answers on the socket (not running, an older one, the socket gone): NoController. This module is
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

SOCKET = "state/backup.sock"
MAX_REQUEST = 64 * 1024
SUN_PATH_MAX = 107  # sockaddr_un's sun_path, less its terminating NUL
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
    from .archive import ArchiveError

    if isinstance(exc, E.StoreError):
        return f"backup failed: etcd of {data_root} is not reachable or failed: {exc}"
    if isinstance(exc, ArchiveError):
        return f"backup failed: {exc}"
    if isinstance(exc, OSError):
        return f"backup failed: {exc.strerror}: {exc.filename or save_path}"
    return None


def socket_address(path: Path, dir_fd: int | None) -> str:
    """A socket path bind/connect accepts: sun_path holds 107 bytes, and pytest's or a deep data
    dir's may be longer; then the same file through an fd of its directory (a /proc magic link)."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX or dir_fd is None:
        return str(path)
    return f"/proc/self/fd/{dir_fd}/{path.name}"


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
    path = data_root / SOCKET
    dir_fd = None
    try:
        if len(os.fsencode(path)) > SUN_PATH_MAX:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            # A Unix connect succeeds once the connection is queued: a stuck controller is
            # noticed by its missing "taking" line, not by the connect.
            sock.settimeout(ACCEPT_WITHIN)
            sock.connect(socket_address(path, dir_fd))
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
    except OSError as e:  # none listens, a stale socket, no permission, a reset, a timeout
        raise NoController(str(e)) from None
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
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
