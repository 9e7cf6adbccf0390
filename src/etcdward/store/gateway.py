"""Reads for one-shot CLI commands through etcd's JSON gateway (grpc-gateway, on the client port).

Importing gRPC and etcd3aio takes longer than the whole of `etcdctl member list`; a command
that only reads can instead POST etcd's own v3 JSON API over the same mutual-TLS port with
the standard library (ssl, http.client). Same endpoint, same certificates, same answers as
the gRPC calls of client.py; errors map to `store.errors` the same way. One request per
connection (`Connection: close`), written by hand: http.client alone imports about as long as
the rest of the command.

    GatewayReader(...).members()     -> list[Member]          (POST /v3/cluster/member/list)
    GatewayReader(...).get_prefix(p) -> (list[KV], revision)  (POST /v3/kv/range, linearizable)
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from pathlib import Path
from typing import Any

from . import errors as E
from .types import KV, Member


class GatewayReader:
    """One endpoint (`127.0.0.1:<port>`), mutual TLS with the node's etcd client certificate."""

    def __init__(self, endpoint: str, ca: Path, cert: Path, key: Path, timeout: float = 5.0,
                 server_name: str = "localhost") -> None:
        self.host, _, port = endpoint.removeprefix("https://").rpartition(":")
        self.port = int(port)
        self.timeout = timeout
        self.server_name = server_name
        self._tls = ssl.create_default_context(cafile=str(ca))
        self._tls.load_cert_chain(str(cert), str(key))

    def _post(self, op: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        request = (f"POST {path} HTTP/1.1\r\nHost: {self.server_name}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode() + payload
        try:
            # TLS checked for the name client.py checks (localhost), whatever address the endpoint is
            with socket.create_connection((self.host, self.port), self.timeout) as raw, \
                    self._tls.wrap_socket(raw, server_hostname=self.server_name) as conn:
                conn.sendall(request)
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as e:
            raise E.Unavailable(f"{op}: {e}") from None
        status, body_bytes = _parse_response(b"".join(chunks))
        try:
            data = json.loads(body_bytes or b"{}")
        except ValueError:
            raise E.Other(f"{op}: etcd answered HTTP {status} with no JSON") from None
        if status != 200 or "error" in data:
            msg = str(data.get("error") or data.get("message") or f"HTTP {status}")
            raise (E.classify(msg) or E.Unavailable)(f"{op}: {msg}")
        return data  # type: ignore[no-any-return]

    def members(self) -> list[Member]:
        data = self._post("member list", "/v3/cluster/member/list", {})
        return [Member(int(m.get("ID", 0)), m.get("name", ""), tuple(m.get("peerURLs") or ()),
                       tuple(m.get("clientURLs") or ()), bool(m.get("isLearner", False)))
                for m in data.get("members") or ()]

    def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        start = prefix.encode()
        end = start[:-1] + bytes([start[-1] + 1])  # prefix_range_end for the ASCII prefixes we use
        data = self._post("get_prefix", "/v3/kv/range", {"key": _b64(start), "range_end": _b64(end)})
        kvs = [KV(base64.b64decode(kv.get("key", "")).decode(), base64.b64decode(kv.get("value", "")),
                  int(kv.get("create_revision", 0)), int(kv.get("mod_revision", 0)), int(kv.get("lease", 0)))
               for kv in data.get("kvs") or ()]
        return kvs, int((data.get("header") or {}).get("revision", 0))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _parse_response(raw: bytes) -> tuple[int, bytes]:
    """Status code and body of one HTTP/1.1 response read to the end (plain or chunked)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise E.Unavailable(f"etcd's gateway answered something that is not HTTP: {raw[:80]!r}") from None
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        out, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out.append(rest[:size])
            rest = rest[size + 2:]
        body = b"".join(out)
    return status, body
