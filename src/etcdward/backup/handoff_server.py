"""The controller's side of `etcdward backup --save-path DIR` (handoff.py has the protocol and
the CLI's side): the data dir's abstract socket, a request per connection, each backup taken as
the CLI would take it (take.py) into the directory the CLI passed open."""

from __future__ import annotations

import array
import asyncio
import json
import logging
import os
import socket
from pathlib import Path

from ..paths import DataDir
from ..store import Store
from .handoff import MAX_REQUEST, TAKING, failure_line, peer_user, socket_name, trusted

log = logging.getLogger(__name__)

REQUEST_WITHIN = 10.0  # seconds from connecting to a whole request: a silent client is dropped


async def serve_backups(store: Store, data: DataDir) -> None:
    """Take the CLI's backups on the data dir's abstract socket (handoff.socket_name) until
    cancelled. A socket that cannot be made is logged, and the CLI takes its backups itself: no
    reason to stop a controller."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            listener.bind(socket_name(data.root))
            listener.listen(8)
            listener.setblocking(False)
        except OSError as e:  # EADDRINUSE: another process took the name (this one holds the data dir)
            log.warning("no backup socket (%s): `etcdward backup` takes its backups itself", e.strerror)
            await asyncio.Future()
        await _accept(listener, store, data)
    finally:
        listener.close()


async def _accept(listener: socket.socket, store: Store, data: DataDir) -> None:
    loop = asyncio.get_running_loop()
    handlers: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as e:  # out of file descriptors, say: the next one may get through
                log.warning("backup socket: %s", e)
                await asyncio.sleep(1.0)
                continue
            task = asyncio.create_task(_serve_one(conn, store, data), name="backup-request")
            handlers.add(task)
            task.add_done_callback(handlers.discard)
    finally:
        for task in handlers:
            task.cancel()


async def _receive(conn: socket.socket, fds: list[int]) -> bytes:
    """The request line; the fds that came with it (with its first bytes) are added to fds as
    they arrive, for the caller to close whatever happens."""
    buf = b""
    while b"\n" not in buf and len(buf) < MAX_REQUEST:
        await _readable(conn)
        fdarr = array.array("i")
        msg, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4 * fdarr.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fdarr.frombytes(payload[:len(payload) - len(payload) % fdarr.itemsize])
        fds += list(fdarr)
        if not msg:
            break
        buf += msg
    return buf.split(b"\n", 1)[0]


async def _readable(conn: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(conn.fileno(), _settle, ready)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())


def _settle(ready: asyncio.Future[None]) -> None:
    if not ready.done():  # a timeout may have cancelled the wait just before
        ready.set_result(None)


async def _hangup(conn: socket.socket) -> None:
    """Returns when the CLI closes its end (it sends nothing after the request)."""
    while True:
        await _readable(conn)
        try:
            if not conn.recv(1):
                return
        except BlockingIOError:
            continue
        except OSError:
            return


async def _serve_one(conn: socket.socket, store: Store, data: DataDir) -> None:
    fds: list[int] = []
    loop = asyncio.get_running_loop()
    try:
        conn.setblocking(False)
        if not trusted(peer_user(conn)):
            log.debug("backup request from a user other than root or this controller's: refused")
            return
        async with asyncio.timeout(REQUEST_WITHIN):
            line = await _receive(conn, fds)
        await loop.sock_sendall(conn, TAKING + b"\n")  # the CLI that gave up meanwhile: EPIPE, nothing taken
        backup = asyncio.create_task(_backup(line, fds, store, data), name="backup-for-the-cli")
        hangup = asyncio.create_task(_hangup(conn), name="backup-cli-hangup")
        try:
            await asyncio.wait({backup, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
            if not backup.done():  # the CLI went away (Ctrl-C), or this controller stops
                log.info("backup for the CLI: cancelled (the command went away, or the controller stops)")
                backup.cancel()
            await asyncio.gather(backup, hangup, return_exceptions=True)
        if not backup.cancelled():
            await loop.sock_sendall(conn, json.dumps(backup.result()).encode() + b"\n")
    except (OSError, TimeoutError) as e:  # the CLI went away or said nothing: its backup was cleaned up
        log.debug("backup request: %s", e)
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


async def _backup(line: bytes, fds: list[int], store: Store, data: DataDir) -> dict[str, str]:
    from .take import take_backup

    try:
        request = json.loads(line)
        shown, save_path = request["dir"], request["savePath"]
    except (ValueError, KeyError, TypeError):
        return {"error": "backup failed: the request to the controller was not understood"}
    if len(fds) != 1 or not isinstance(shown, str) or not isinstance(save_path, str):
        return {"error": "backup failed: the request to the controller carried no directory"}
    where = Path(f"/proc/self/fd/{fds[0]}")
    try:
        taken = await take_backup(store, data, data.effective_config.read_bytes(), where)
    except Exception as e:  # noqa: BLE001 - every failure is answered; the CLI prints it
        said = failure_line(e, data.root, save_path)
        if said is None:
            log.warning("backup for the CLI failed: %s: %s", type(e).__name__, e)
            said = f"backup failed: {type(e).__name__}: {e}"
        return {"error": said.replace(str(where), shown)}
    assert taken.path is not None
    log.info("backup for the CLI: %s/%s (revision %d)", shown, taken.path.name, taken.manifest.revision)
    return {"name": taken.path.name}
