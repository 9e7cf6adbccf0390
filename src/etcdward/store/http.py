"""HTTP/1.1 over mutual TLS to ONE etcd client port, in the event loop: kept-alive connections
for requests, one connection per streamed answer (a watch, a snapshot).

Written on asyncio's streams (httpconn.Connection) rather than httpx: a request is POST + JSON to
one endpoint, and the streamed answers are etcd's newline-delimited JSON in chunks.

Errors: a connection that fails (refused, reset, closed, not HTTP) raises ConnectionError;
whoever called decides what that means (client.py: Unavailable). A pooled connection that etcd
closed meanwhile (it restarted) is noticed before use and not reused; a request that meets one
anyway is sent again on a new connection only when the caller says it may be repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

from ..httpconn import BrokenConnection, Connection

__all__ = ["BrokenConnection", "Connection", "Endpoint", "tls_context"]

KEEP_IDLE = 4  # idle connections kept per endpoint: the controller's concurrent calls, give or take


def tls_context(ca: bytes, cert: bytes, key: bytes, alpn: str = "http/1.1") -> ssl.SSLContext:
    """ssl.create_default_context(cafile=...) with the client certificate, all from memory
    (OpenSSL reads a certificate chain from a path only: an anonymous in-memory file's)."""
    ctx = ssl.create_default_context(cadata=ca.decode())
    ctx.set_alpn_protocols([alpn])
    files = []
    try:
        for pem in (cert, key):
            fd = os.memfd_create("etcdward-tls", os.MFD_CLOEXEC)
            files.append(fd)
            os.write(fd, pem)
        ctx.load_cert_chain(f"/proc/self/fd/{files[0]}", f"/proc/self/fd/{files[1]}")
    finally:
        for fd in files:
            os.close(fd)
    return ctx


class Endpoint:
    """Requests to one https://host:port, TLS checked for server_name."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, server_name: str) -> None:
        self.host, self.port, self.ctx, self.server_name = host, port, ctx, server_name
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self._retiring: set[asyncio.Task[None]] = set()

    async def _connect(self) -> Connection:
        conn = await Connection.open(self.host, self.port, self.ctx, self.server_name)
        self._open.add(conn)
        return conn

    def _drop(self, conn: Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def request(self, path: str, body: dict[str, Any], repeatable: bool) -> tuple[int, bytes]:
        """POST body as JSON; the answer's status and whole body."""
        payload = json.dumps(body).encode()
        while self._idle:  # only connections of the current context are ever idle (_exchange, retire)
            conn = self._idle.pop()
            if conn.usable():
                break
            self._drop(conn)
        else:
            conn = await self._connect()
            repeatable = False  # a new connection that fails is no stale one
        try:
            return await self._exchange(conn, path, payload)
        except BrokenConnection as e:
            if e.answered or not repeatable:
                raise
        return await self._exchange(await self._connect(), path, payload)

    async def _exchange(self, conn: Connection, path: str, payload: bytes) -> tuple[int, bytes]:
        try:
            status, headers, body = await conn.exchange(path, payload, self.server_name)
        except BaseException:  # closed by exchange
            self._open.discard(conn)
            raise
        if conn.reusable(headers) and len(self._idle) < KEEP_IDLE and conn.ctx is self.ctx:
            self._idle.append(conn)
        else:
            self._drop(conn)
        return status, body

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[tuple[int, AsyncIterator[Any]]]:
        """POST body on a connection of its own; the answer's status and its JSON lines as they
        come (a status other than 200 comes with one line, the error). The connection is closed
        on leaving: that is how a streamed call (a watch) is cancelled."""
        conn = await self._connect()
        try:
            await conn.send(path, json.dumps(body).encode(), self.server_name)
            status, headers = await conn.head()
            yield status, _lines(conn.pieces(headers))
        finally:
            self._drop(conn)

    def retire(self, grace: float) -> None:
        """New requests use new connections (with self.ctx, changed by the caller); the ones open
        now are closed after grace seconds: what runs on them has that long to finish."""
        for conn in self._idle:  # nothing runs on these
            self._drop(conn)
        self._idle.clear()
        old = set(self._open)

        async def close_later() -> None:
            try:
                await asyncio.sleep(grace)
            finally:  # and any opened meanwhile with the old context
                for conn in old | {c for c in self._open if c.ctx is not self.ctx}:
                    self._drop(conn)

        task = asyncio.create_task(close_later(), name="store-close-old-connections")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=5.0)
        for conn in list(self._open):
            self._drop(conn)
        self._idle.clear()


async def _lines(pieces: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """The JSON values of a newline-delimited stream, whatever its chunks' boundaries."""
    buffer = b""
    async for piece in pieces:
        buffer += piece
        *whole, buffer = buffer.split(b"\n")
        for line in whole:
            if line.strip():
                yield _json(line)
    if buffer.strip():
        yield _json(buffer)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise BrokenConnection(f"an answer that is not JSON: {raw[:80]!r}", answered=True) from None
