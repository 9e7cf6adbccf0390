"""One HTTP/1.1 connection over TLS in the event loop: a request, then its answer's status,
headers and body (whole, Content-Length; or as it arrives, chunked).

Shared by the store's etcd client (store/http.py: etcd's JSON gateway) and the join client
(join/client.py: the join API). Written on asyncio's streams rather than httpx: each request is
one JSON body to a server that answers with JSON, and importing httpx with httpcore and anyio
costs a joiner ~0.14 s of CPU on its way to its join request (issue 12: formation).

A connection that fails (refused, reset, closed, not HTTP) raises BrokenConnection; whoever
called decides what that means.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping


class BrokenConnection(ConnectionError):
    """The connection failed; `answered` says whether any of the answer had arrived."""

    def __init__(self, message: str, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


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

    async def exchange(self, path: str, payload: bytes, host: str, method: str = "POST",
                       headers: Mapping[str, str] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
        """One request and its whole answer: status, headers (names in lower case), body. A
        failure or cancellation half way closes the connection: what is left on it is not the
        next answer."""
        ok = False
        try:
            await self.send(path, payload, host, method, headers)
            status, head = await self.head()
            body = b"".join([piece async for piece in self.pieces(head)])
            ok = True
        finally:
            if not ok:
                self.close()
        return status, head, body

    async def send(self, path: str, payload: bytes, host: str, method: str = "POST",
                   headers: Mapping[str, str] | None = None) -> None:
        """One request; `payload` is JSON (none for a GET without a body)."""
        extra = headers or {}
        for part in (method, path, host, *extra.keys(), *extra.values()):
            if "\r" in part or "\n" in part or "\0" in part:  # it would end the line: another header
                raise ValueError(f"a line break in a request line or header: {part[:60]!r}")
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
        if payload or method != "GET":
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        self.writer.write((head + "\r\n").encode() + payload)
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


def _line(line: bytes) -> bytes:
    if not line:  # readline's end of file: the answer is not whole
        raise asyncio.IncompleteReadError(b"", None)
    return line
