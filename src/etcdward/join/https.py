"""The join client's HTTPS: JSON requests to one join API (https://host:port) on one kept-alive
connection, so that the CA fetch and the join request share one TLS handshake.

Not httpx: a joiner's way to its join request is what a formation waits for, and httpx with
httpcore and anyio took ~0.14 s of CPU there, with 4 joiners starting side by side (issue 12).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..httpconn import BrokenConnection, Connection


class HTTPError(Exception):
    """No answer: the connection failed or the request timed out (worth another try)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError if it is none."""
        return json.loads(self.body)


class JoinHTTP:
    """Requests to `base_url` (https://host:port) trusting `ctx`, with `headers` on each.
    `timeout` bounds a whole request (connecting, sending, the answer); `connect` the connect."""

    def __init__(self, base_url: str, ctx: ssl.SSLContext, headers: Mapping[str, str], timeout: float,
                 connect: float = 5.0) -> None:
        url = urlsplit(base_url)
        try:
            port = 443 if url.port is None else url.port
            (url.hostname or "").encode("idna")  # what the resolver would refuse: an empty label, one too long
        except (ValueError, UnicodeError):  # a port that is not a number or out of range
            port = 0
        if url.scheme != "https" or not url.hostname or not port or url.query or url.fragment or "@" in url.netloc:
            raise ValueError(f"{base_url!r} is not an https://host[:port] URL")
        self.host, self.port, self.authority = url.hostname, port, url.netloc
        self.prefix = url.path.rstrip("/")  # a join API behind a path, as httpx's base_url allowed
        self.ctx, self.headers, self.timeout, self.connect = ctx, dict(headers), timeout, connect
        self._idle: Connection | None = None

    async def request(self, method: str, path: str, body: Any = None,
                      headers: Mapping[str, str] | None = None) -> Answer:
        payload = b"" if body is None else json.dumps(body).encode()
        extra = {**self.headers, **(headers or {})}
        try:
            async with asyncio.timeout(self.timeout):
                conn, reused = self._idle, True
                self._idle = None
                if conn is None or not conn.usable():
                    if conn is not None:
                        conn.close()
                    conn, reused = await self._open(), False
                try:
                    return await self._exchange(conn, method, path, payload, extra)
                except BrokenConnection as e:
                    if e.answered or not reused:
                        raise
                # A kept-alive connection the server had closed meanwhile: once more on a new
                # one (both requests a joiner makes may be repeated: see join/server.py).
                return await self._exchange(await self._open(), method, path, payload, extra)
        except TimeoutError:
            raise HTTPError(f"no answer within {self.timeout:g}s") from None
        except BrokenConnection as e:
            raise HTTPError(str(e)) from None

    async def _open(self) -> Connection:
        try:
            async with asyncio.timeout(self.connect):
                return await Connection.open(self.host, self.port, self.ctx, self.host)
        except TimeoutError:
            raise BrokenConnection(f"could not connect within {self.connect:g}s", answered=False) from None

    async def _exchange(self, conn: Connection, method: str, path: str, payload: bytes,
                        headers: Mapping[str, str]) -> Answer:
        status, raw, body = await conn.exchange(self.prefix + path, payload, self.authority, method, headers)
        if conn.reusable(raw):
            self._idle = conn
        else:
            conn.close()
        return Answer(status, {k.decode("latin-1"): v.decode("latin-1") for k, v in raw.items()}, body)

    async def close(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None
