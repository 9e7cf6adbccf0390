"""HTTP/1.1 over mutual TLS to ONE etcd client port, in the event loop: kept-alive connections
for requests, one connection per streamed answer (a watch, a snapshot).

Written on asyncio's streams rather than httpx: a request is POST + JSON to one endpoint, and
the streamed answers are etcd's newline-delimited JSON in chunks, which is all this has to read.

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

KEEP_IDLE = 4  # idle connections kept per endpoint: the controller's concurrent calls, give or take


class BrokenConnection(ConnectionError):
    """The connection failed; `answered` says whether any of the answer had arrived."""

    def __init__(self, message: str, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


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


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
        self.reader, self.writer, self.ctx = reader, writer, ctx

    @classmethod
    async def open(cls, host: str, port: int, ctx: ssl.SSLContext, server_name: str) -> Connection:
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_name)
        except (OSError, ssl.SSLError) as e:
            raise BrokenConnection(str(e) or type(e).__name__, answered=False) from None
        return cls(reader, writer, ctx)

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()

    async def send(self, path: str, payload: bytes, host: str) -> None:
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        try:
            await self.writer.drain()
        except (OSError, ssl.SSLError) as e:
            raise BrokenConnection(str(e) or type(e).__name__, answered=False) from None

    async def head(self) -> tuple[int, dict[bytes, bytes]]:
        """The status and headers of the next answer."""
        try:
            first = await self.reader.readline()
            if not first:
                raise BrokenConnection("the connection was closed", answered=False)
            try:
                status = int(first.split()[1])
            except (IndexError, ValueError):
                raise BrokenConnection(f"an answer that is not HTTP: {first[:80]!r}", answered=True) from None
            headers = {}
            while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
        except (OSError, ssl.SSLError, ValueError) as e:  # ValueError: a line over the reader's limit
            raise BrokenConnection(str(e) or type(e).__name__, answered=False) from None
        return status, headers

    async def pieces(self, headers: dict[bytes, bytes]) -> AsyncIterator[bytes]:
        """The answer's body as it arrives (chunked), or whole (Content-Length)."""
        try:
            if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
                yield await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
                return
            while size := int(_line(await self.reader.readline()).split(b";")[0].strip(), 16):
                piece = await self.reader.readexactly(size + 2)  # and its CRLF
                if piece[-2:] != b"\r\n":
                    raise ValueError("a chunk longer than its size")
                yield piece[:-2]
            while _line(await self.reader.readline()) not in (b"\r\n", b"\n"):  # trailers
                pass
        except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError) as e:
            raise BrokenConnection(f"the answer broke off ({type(e).__name__}: {e})", answered=True) from None

    def reusable(self, headers: dict[bytes, bytes]) -> bool:
        return headers.get(b"connection", b"").lower() != b"close"


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
        ok = False
        try:
            await conn.send(path, payload, self.server_name)
            status, headers = await conn.head()
            body = b"".join([piece async for piece in conn.pieces(headers)])
            ok = True
        finally:
            if not ok:  # failed or cancelled half way: what is left on it is not the next answer
                self._drop(conn)
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


def _line(line: bytes) -> bytes:
    if not line:  # readline's end of file: the answer is not whole
        raise asyncio.IncompleteReadError(b"", None)
    return line


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
