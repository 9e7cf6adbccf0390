"""Asking etcd peer listeners who they are, with this node's peer certificate.

etcd serves `GET /members` on its peer listener as soon as it starts, before it has a quorum
(its client listener waits for one): the answer carries the cluster ID in the header
`X-Etcd-Cluster-Id` and the member list as the peer sees it. Used where the client API cannot
answer: `recover` (who were the members, which of them still answer) and the controller's
check that the cluster of its etcd data still exists (fence.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from .paths import DataDir

PROBE_TIMEOUT = 2.0
MAX_ANSWER = 1 << 20


@dataclass(frozen=True)
class PeerMember:
    id: str  # lowercase hex
    name: str
    peer_urls: tuple[str, ...]
    is_learner: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "id": self.id, "peerURLs": list(self.peer_urls), "isLearner": self.is_learner}


@dataclass(frozen=True)
class PeerAnswer:
    url: str
    cluster_id: str  # lowercase hex, from X-Etcd-Cluster-Id
    members: tuple[PeerMember, ...]


def peer_tls(data: DataDir) -> ssl.SSLContext:
    """A client context with this node's etcd peer certificate, trusting the etcd CA."""
    ca, _ = data.etcd_cert("ca")
    crt, key = data.etcd_cert("peer")
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


async def ask(url: str, tls: ssl.SSLContext | None, timeout: float = PROBE_TIMEOUT) -> PeerAnswer | None:
    """GET <peer url>/members; None when nothing answers as an etcd peer (refused, timed out,
    TLS refused, not HTTP, no cluster ID header)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 2380
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=tls if parts.scheme == "https" else None,
                server_hostname=host if parts.scheme == "https" else None)
            try:
                netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                writer.write(f"GET /members HTTP/1.0\r\nHost: {netloc}\r\nAccept: application/json\r\n\r\n".encode())
                await writer.drain()
                raw = await reader.read(MAX_ANSWER)
            finally:
                writer.close()
    except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
        return None
    return parse_answer(url, raw)


def parse_answer(url: str, raw: bytes) -> PeerAnswer | None:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/1."):
        return None
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    cluster = headers.get("x-etcd-cluster-id", "").lower()
    if not cluster:
        return None
    members: list[PeerMember] = []
    try:
        for m in json.loads(body) if lines[0].split()[1:2] == ["200"] else []:
            members.append(PeerMember(format(int(m["id"]), "x"), str(m.get("name") or ""),
                                      tuple(str(u) for u in m.get("peerURLs") or ()), bool(m.get("isLearner"))))
    except (ValueError, KeyError, TypeError):
        members = []
    return PeerAnswer(url, cluster, tuple(members))


async def ask_all(urls: list[str], tls: ssl.SSLContext | None, timeout: float = PROBE_TIMEOUT,
                  ) -> dict[str, PeerAnswer | None]:
    answers = await asyncio.gather(*(ask(u, tls, timeout) for u in urls))
    return dict(zip(urls, answers))
