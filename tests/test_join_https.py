"""The join client's HTTPS (join/https.py) against a small TLS server in the test's loop: one
kept-alive connection for a joiner's requests, a connection the server closed meanwhile, no
answer, no server, and which base URLs it takes."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdward import pki
from etcdward.join.client import client_ssl_context
from etcdward.join.https import HTTPError, JoinHTTP

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, a joiner's client context trusting the CA)."""
    d: Path = tmp_path_factory.mktemp("tls")
    ca = pki.new_ca("test CA")
    leaf = pki.new_leaf(ca, "api", ["127.0.0.1"], server=True, client=False)
    (d / "api.crt").write_bytes(leaf.cert_pem)
    (d / "api.key").write_bytes(leaf.key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(d / "api.crt", d / "api.key")
    return server, client_ssl_context(ca.cert_pem)


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    headers = {}
    while (h := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line.decode().strip(), headers, body


def answer(status: int, body: dict[str, object], chunked: bool = False, close: bool = False) -> bytes:
    raw = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nX-Etcdward-Queue-Position: 2\r\n"
    if close:
        head += "connection: close\r\n"
    if chunked:
        half = len(raw) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (raw[:half], raw[half:]))
        return (head + "transfer-encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    return (head + f"content-length: {len(raw)}\r\n\r\n").encode() + raw


async def serve(ctx: ssl.SSLContext, handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    return server, f"https://127.0.0.1:{port}"


def test_a_joiners_requests_share_one_connection_and_read_whole_answers(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    seen: list[tuple[int, str, dict[str, str], bytes]] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while (req := await read_request(reader)) is not None:
            seen.append((connections, *req))
            writer.write(answer(200, {"n": len(seen)}, chunked=len(seen) == 2))
            await writer.drain()
        writer.close()

    url = ""

    async def go() -> list[object]:
        nonlocal url
        server, url = await serve(tls[0], handler)
        http = JoinHTTP(url + "/prefix/", tls[1], {"Authorization": "Bearer abc"}, timeout=5)
        try:
            a = await http.request("GET", "/v1beta1/ca")
            b = await http.request("POST", "/v1beta1/etcd/members", {"node": "n2"}, headers={"X-Extra": "1"})
            return [a.status, a.json(), b.json(), b.headers["x-etcdward-queue-position"]]
        finally:
            await http.close()
            server.close()

    assert asyncio.run(go()) == [200, {"n": 1}, {"n": 2}, "2"]
    assert connections == 1 and [s[0] for s in seen] == [1, 1]
    (_, get, get_headers, get_body), (_, post, post_headers, post_body) = seen
    assert get == "GET /prefix/v1beta1/ca HTTP/1.1" and get_body == b"" and "content-length" not in get_headers
    assert post == "POST /prefix/v1beta1/etcd/members HTTP/1.1" and json.loads(post_body) == {"node": "n2"}
    assert post_headers["authorization"] == "Bearer abc" and post_headers["x-extra"] == "1"
    assert get_headers["host"] == post_headers["host"] == url.removeprefix("https://")


def test_a_connection_the_server_closed_meanwhile_is_not_an_error(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if await read_request(reader) is not None:
            writer.write(answer(200, {"connection": connections}))  # kept alive, says the answer...
            await writer.drain()
        writer.close()  # ...and then closed, as a restarting server does

    async def go() -> list[object]:
        server, url = await serve(tls[0], handler)
        http = JoinHTTP(url, tls[1], {}, timeout=5)
        try:
            first = (await http.request("GET", "/a")).json()
            await asyncio.sleep(0.1)
            second = (await http.request("POST", "/b", {})).json()
            return [first, second]
        finally:
            await http.close()
            server.close()

    assert asyncio.run(go()) == [{"connection": 1}, {"connection": 2}]


def test_no_answer_and_no_server_are_http_errors(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)
        writer.close()

    async def go() -> list[str]:
        server, url = await serve(tls[0], silent)
        out = []
        http = JoinHTTP(url, tls[1], {}, timeout=0.3)
        try:
            with pytest.raises(HTTPError) as e:
                await http.request("POST", "/x", {})
            out.append(str(e.value))
        finally:
            await http.close()
            server.close()
            await server.wait_closed()
        gone = JoinHTTP(url, tls[1], {}, timeout=2)
        with pytest.raises(HTTPError) as e:
            await gone.request("GET", "/x")
        out.append(str(e.value))
        return out

    late, refused = asyncio.run(go())
    assert late == "no answer within 0.3s"
    assert "refused" in refused.lower() or "failed" in refused.lower(), refused


def test_a_server_the_ca_does_not_sign_is_refused(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def go() -> str:
        server, url = await serve(tls[0], handler)
        other = client_ssl_context(pki.new_ca("another CA").cert_pem)
        http = JoinHTTP(url, other, {}, timeout=2)
        try:
            with pytest.raises(HTTPError) as e:
                await http.request("GET", "/v1beta1/ca")
            return str(e.value)
        finally:
            server.close()

    assert "certificate verify failed" in asyncio.run(go())


@pytest.mark.parametrize("url", ["http://127.0.0.1:9443", "https://", "https://h:99999", "https://h:x", "https://h:0",
                                 "https://u@h:9443", "https://h:9443/?q=1", "https://h:9443/#f", "127.0.0.1:9443",
                                 "https://a..b:9443", "https://" + "x" * 64 + ".example:9443"])
def test_base_urls_that_are_not_https_host_port_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="is not an https://host"):
        JoinHTTP(url, ssl.create_default_context(), {}, timeout=1)


@given(st.text(max_size=40))
def test_any_base_url_is_taken_or_refused_with_value_error(url: str) -> None:
    try:
        http = JoinHTTP(url, ssl.create_default_context(), {}, timeout=1)
    except ValueError:
        return
    assert http.host and 0 < http.port < 65536


@pytest.mark.parametrize("name,value", [("X-Etcdward-Learner-ID", "1\r\nX-Injected: 1"), ("X-A\nB", "1"),
                                        ("X-A", "1\x00")])
def test_a_header_that_would_end_its_line_is_never_sent(name: str, value: str) -> None:
    from etcdward.httpconn import Connection

    class Writer:
        sent = b""

        def write(self, data: bytes) -> None:
            self.sent += data

    writer = Writer()

    async def go() -> None:
        conn = Connection(asyncio.StreamReader(), writer, None)  # type: ignore[arg-type]  # writing only
        await conn.send("/x", b"{}", "h:1", headers={name: value})

    with pytest.raises(ValueError, match="line break"):
        asyncio.run(go())
    assert writer.sent == b""


def test_a_join_answer_whose_member_id_is_not_hex_is_refused_before_anything_is_written() -> None:
    from etcdward.join import client as jc

    answer = {"initialCluster": ["n2=https://10.0.0.2:2380"], "ca": {"cert": "", "key": ""},
              "memberID": "1\r\nX-Injected: 1"}
    with pytest.raises(jc.JoinFailed, match="memberID"):  # data dir None: any write would fail otherwise
        jc._accepted(None, None, "n2", None, None, {}, answer, {})  # type: ignore[arg-type]
