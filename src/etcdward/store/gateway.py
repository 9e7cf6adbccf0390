"""Reads for one-shot CLI commands through etcd's JSON gateway (grpc-gateway, on the client port),
blocking, without asyncio.

Importing asyncio and ssl.py costs a command about as long as the whole of `etcdctl member
list`; a command that only reads POSTs etcd's v3 JSON API (wire.py) over the same mutual-TLS
port with the C modules alone. Same endpoint, same certificates, same answers as client.py's
Store; errors map to `store.errors` the same way (wire.error). All requests of one reader go over ONE
kept-alive connection (a TLS handshake costs more than a read), written by hand: http.client
alone imports about as long as the rest of the command.

The connection is made with the C modules under ssl and socket (_ssl, _socket), by the calls
ssl.SSLContext and ssl.SSLSocket make: importing ssl.py and socket.py (with selectors, base64
and the enum classes they build from the C constants) costs ~8-12 ms, as much as all the reads
of a command. The context is the one ssl.create_default_context(cafile=ca) makes (the C
context's defaults for PROTOCOL_TLS_CLIENT: certificate and host name checked, TLS >= 1.2, the
same options and ciphers), the errors are the same C exceptions (ssl.SSLError is _ssl.SSLError,
OSError, TimeoutError), and a ragged EOF reads as an end of file, as ssl.SSLSocket reads it.

    GatewayReader(...).members()     -> list[Member]          (POST /v3/cluster/member/list)
    GatewayReader(...).get_prefix(p) -> (list[KV], revision)  (POST /v3/kv/range, linearizable)
    GatewayReader(...).get(key)      -> KV | None             (POST /v3/kv/range, linearizable)
    GatewayReader(...).read_all(reads) -> [(list[KV], revision)] (POST /v3/kv/txn: several ranges, one
                                                              linearizable read, one revision)
    GatewayReader(...).status()      -> Status                (POST /v3/maintenance/status, local)
    GatewayReader(...).alarms()      -> list[Alarm]           (POST /v3/maintenance/alarm, through raft)
"""

from __future__ import annotations

import _socket
import _ssl
import io
import json

from . import errors as E
from . import wire
from .types import KV, Alarm, Member, Status

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike
    from typing import Any


class GatewayReader:
    """One endpoint (`127.0.0.1:<port>`), mutual TLS with the node's etcd client certificate."""

    def __init__(self, endpoint: str, ca: str | PathLike[str], cert: str | PathLike[str], key: str | PathLike[str],
                 timeout: float = 5.0, server_name: str = "localhost") -> None:
        self.host, _, port = endpoint.removeprefix("https://").rpartition(":")
        self.port = int(port)
        self.timeout = timeout
        self.server_name = server_name
        self._tls = _ssl._SSLContext(_ssl.PROTOCOL_TLS_CLIENT)  # as ssl.create_default_context(cafile=ca)
        self._tls.load_verify_locations(str(ca))
        self._tls.load_cert_chain(str(cert), str(key))
        self._sock: Any = None  # the _socket.socket, which the TLS object only holds a weak reference to
        self._conn: Any = None
        self._in: Any = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = self._conn = self._in = None

    def __enter__(self) -> GatewayReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _post(self, op: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send(op, path, body)()  # type: ignore[no-any-return]

    def _send(self, op: str, path: str, body: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """Write the request now; the function returned reads its answer. Answers come in the order
        the requests were written (HTTP/1.1 pipelining): read them in that order."""
        payload = json.dumps(body).encode()
        request = (f"POST {path} HTTP/1.1\r\nHost: {self.server_name}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
        try:
            if self._conn is None:
                self._connect()
            sent = 0
            while sent < len(request):  # ssl.SSLSocket.sendall
                sent += self._conn.write(request[sent:])
        except OSError as e:
            self.close()
            raise E.Unavailable(f"{op}: {e}") from None
        return lambda: self._answer(op)

    def _answer(self, op: str) -> dict[str, Any]:
        if self._in is None:  # an earlier answer's error closed the connection
            raise E.Unavailable(f"{op}: the connection was closed")
        try:
            status, body_bytes = _read_response(self._in)
        except OSError as e:
            self.close()
            raise E.Unavailable(f"{op}: {e}") from None
        return wire.answer(op, status, body_bytes)

    def _connect(self) -> None:
        # The host as ASCII bytes: getaddrinfo IDNA-encodes a str first, and the idna codec's
        # import (stringprep, unicodedata) costs more than a read
        self._sock = _connect_tcp(self.host.encode("ascii"), self.port, self.timeout)
        # TLS checked for the name client.py checks (localhost), whatever address the endpoint is:
        # ssl.SSLSocket._create's call (which takes the name as ASCII), then its handshake
        self._conn = self._tls._wrap_socket(self._sock, False, self.server_name)
        self._conn.do_handshake()
        self._in = io.BufferedReader(_TLSReader(self._conn))

    def members(self) -> list[Member]:
        return self.send_members()()

    def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        return self.send_get_prefix(prefix)()

    def get(self, key: str) -> KV | None:
        kvs = wire.range_answer(self._post("get", "/v3/kv/range", wire.key_range(key, False)))[0]
        return kvs[0] if kvs else None

    def read_all(self, reads: list[tuple[str, bool]]) -> list[tuple[list[KV], int]]:
        """Each (key, is a prefix) read as get_prefix reads it, all in one read-only transaction:
        one round trip instead of one each, linearizable as each of them, all at one revision."""
        return self.send_read_all(reads)()

    def status(self) -> Status:
        return self.send_status()()

    # send_X(): X's request written now, its answer read by the function returned (in the order
    # sent), so that a command can do its own work while etcd answers

    def send_members(self) -> Callable[[], list[Member]]:
        answer = self._send("member list", "/v3/cluster/member/list", {})
        return lambda: wire.members(answer())

    def send_get_prefix(self, prefix: str) -> Callable[[], tuple[list[KV], int]]:
        answer = self._send("get_prefix", "/v3/kv/range", wire.key_range(prefix, True))
        return lambda: wire.range_answer(answer())

    def send_read_all(self, reads: list[tuple[str, bool]]) -> Callable[[], list[tuple[list[KV], int]]]:
        answer = self._send("txn", "/v3/kv/txn", {"success": [{"request_range": wire.key_range(k, p)} for k, p in reads]})
        return lambda: wire.txn_answer(answer(), len(reads))

    def send_status(self) -> Callable[[], Status]:
        answer = self._send("status", "/v3/maintenance/status", {})
        return lambda: wire.status(answer())

    def alarms(self) -> list[Alarm]:
        return wire.alarms(self._post("alarm list", "/v3/maintenance/alarm", {"action": "GET"}))


def _connect_tcp(host: bytes, port: int, timeout: float) -> Any:
    """socket.create_connection((host, port), timeout): each address in turn, the last error."""
    error: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _Socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error or OSError("getaddrinfo returns an empty list")


class _Socket(_socket.socket):
    __slots__ = ("__weakref__",)  # the TLS object refers to its socket weakly (as socket.socket allows)


class _TLSReader(io.RawIOBase):
    """The connection's reading end, as socket.SocketIO under ssl.SSLSocket.makefile("rb")."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._conn.read(len(buffer), buffer)  # type: ignore[no-any-return]
        except _ssl.SSLError as e:
            if e.args[0] == _ssl.SSL_ERROR_EOF:  # ssl.SSLSocket's suppress_ragged_eofs
                return 0
            raise


def _read_response(stream: Any) -> tuple[int, bytes]:
    """Status code and body of one HTTP/1.1 response (Content-Length or chunked), leaving the
    connection at the start of the next one."""
    first = stream.readline()
    try:
        status = int(first.split()[1])
    except (IndexError, ValueError):
        raise E.Unavailable(f"etcd's gateway answered something that is not HTTP: {first[:80]!r}") from None
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        out = []
        while size := int(stream.readline().split(b";")[0].strip() or b"0", 16):
            out.append(stream.read(size))
            stream.readline()
        while stream.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return status, b"".join(out)
    return status, stream.read(int(headers.get(b"content-length", b"0")))
