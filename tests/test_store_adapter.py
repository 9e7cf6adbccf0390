"""The etcd adapter over etcd's JSON gateway: kept-alive connections (renewals cost no new
connection; one etcd closed while it restarted is not an error), its certificate change, the
wire format of its errors and of a streamed answer."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st_

from etcdward.store import errors as E
from etcdward.store import wire
from etcdward.store.http import _lines
from tests.cluster import Cluster, run_async, wait_for
from tests.prereqs import needs


@needs("etcd")
def test_renewals_and_reads_share_one_kept_alive_connection(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")

    async def go() -> None:
        async with n1.store() as st:
            a, b = await st.grant_lease(30), await st.grant_lease(30)
            for _ in range(5):
                ttl_a, term = await st.keep_alive(a)
                ttl_b, _ = await st.keep_alive(b)
                assert 25 <= ttl_a <= 30 and 25 <= ttl_b <= 30 and term >= 1
                await st.get_prefix("/")
            assert len(st._http._open) == 1  # noqa: SLF001 - the one connection is what this test is about
            await st.revoke_lease(b)
            assert (await st.keep_alive(b))[0] <= 0  # gone: answered, not an error
            # calls at once take a connection each; the pool keeps them for the next ones
            await asyncio.gather(*(st.keep_alive(a) for _ in range(3)))
            opened = set(st._http._open)  # noqa: SLF001
            await asyncio.gather(*(st.keep_alive(a) for _ in range(3)))
            assert st._http._open == opened  # noqa: SLF001
            # a call given up half way leaves no answer behind for the next one
            with pytest.raises(E.Unavailable, match="timed out"):
                await st._post("get", "/v3/kv/range", wire.key_range("/", True), timeout=1e-6)  # noqa: SLF001
            assert (await st.keep_alive(a))[0] > 0 and (await st.get("/nothing")) is None

    run_async(go())


@needs("etcd")
def test_a_connection_etcd_closed_by_restarting_is_no_error(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")

    async def go() -> None:
        async with n1.store() as st:
            await st.put("/t/a", "1")
            pid = n1.etcd_pid()
            os.kill(pid, signal.SIGKILL)  # its supervisor starts it again
            await asyncio.to_thread(wait_for, lambda: n1.etcd_pid() not in (None, pid) and n1.is_ready(), 30,
                                    "etcd back", n1)
            assert (await st.get("/t/a")).value == b"1"  # the kept connection is dead: a new one, no error

    run_async(go())


@needs("etcd")
def test_a_new_client_certificate_is_used_and_old_watches_end(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")

    async def go() -> None:
        async with n1.store() as st:
            _, rev = await st.get_prefix("/t/")
            watch = st.watch_prefix("/t/", rev + 1)
            first = asyncio.ensure_future(anext(watch))
            await asyncio.sleep(0.2)
            before = set(st._http._open)  # noqa: SLF001
            crt, key = n1.data.etcd_cert("client")
            await st.use_client_cert(crt.read_bytes(), key.read_bytes(), grace=0.3)
            await st.put("/t/a", "1")  # on a new connection, with the new context
            assert not before & set(st._http._idle)  # noqa: SLF001
            assert [ev.key for ev in await first] == ["/t/a"]  # the old watch still runs within grace
            with pytest.raises(E.Unavailable):
                await asyncio.wait_for(anext(watch), 5)  # ... and ends after it
            await watch.aclose()

    run_async(go())


@needs("etcd")
def test_a_watch_left_early_closes_without_an_error(cluster: Cluster) -> None:
    """A caller that stops iterating (break, return) must not leave an error behind: asyncio
    finalizes an abandoned async generator in a task of its own, and a watch that answered
    GeneratorExit with a store error logged 'Task exception was never retrieved' (seen on every
    controller when a reconciler election moved)."""
    n1 = cluster.bootstrap("n1")
    reported: list[dict] = []

    async def go() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        async with n1.store() as st:
            _, rev = await st.get_prefix("/t/")
            await st.put("/t/a", "1")
            async for batch in st.watch_prefix("/t/", rev + 1):
                assert [ev.key for ev in batch] == ["/t/a"]
                break
            async for batch in st.follow_prefix("/t/"):
                if not batch:
                    await st.put("/t/b", "2")
                    continue
                break
            gc.collect()
            for _ in range(5):
                await asyncio.sleep(0.05)
        assert reported == []

    run_async(go())


def test_gateway_errors_map_to_store_errors() -> None:
    assert type(wire.error("x", 404, {"error": "etcdserver: member not found", "code": 5})) is E.MemberNotFound
    assert type(wire.error("x", 503, {"error": "etcdserver: too many learner members in cluster", "code": 9})) \
        is E.TooManyLearners
    assert type(wire.error("x", 503, {"error": "etcdserver: leader changed", "code": 14})) is E.LeaderChanged
    assert type(wire.error("x", 503, {"error": "etcdserver: not capable", "code": 14})) is E.Refused
    assert type(wire.error("x", 403, {"error": "nope", "code": 7})) is E.PermissionDenied
    assert type(wire.error("x", 400, {"error": "bad", "code": 3})) is E.Other
    assert type(wire.error("x", 502, {})) is E.Refused  # no JSON error: the status says it
    streamed = wire.error("watch", 200, {"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader"}})
    assert type(streamed) is E.Refused and "no leader" in str(streamed)


@given(st_.lists(st_.dictionaries(st_.sampled_from("abc"), st_.integers()), max_size=5), st_.integers(1, 7))
def test_a_streamed_answer_reads_the_same_whatever_its_chunks(values: list[dict], cut: int) -> None:
    raw = b"".join(wire_line(v) for v in values)

    async def pieces():
        for i in range(0, len(raw), cut):
            yield raw[i:i + cut]

    async def go() -> list:
        return [v async for v in _lines(pieces())]

    assert asyncio.run(go()) == values


def wire_line(value: dict) -> bytes:
    import json

    return json.dumps(value).encode() + b"\n"


@needs("etcd")
def test_an_etcd_that_cannot_be_reached_is_reported_at_once(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")  # for its certificates; the port below has nobody listening
    import socket
    import time

    from etcdward.store.client import Store

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ca, _ = n1.data.etcd_cert("ca")
    crt, key = n1.data.etcd_cert("client")

    async def go() -> None:
        async with Store.from_files(f"127.0.0.1:{port}", ca, crt, key, timeout=5.0) as st:
            t0 = time.monotonic()
            with pytest.raises(E.Unavailable) as err:
                await st.get("/x")
            assert not isinstance(err.value, E.Refused) and time.monotonic() - t0 < 1.0

    run_async(go())


def test_a_snapshot_message_reads_as_etcd_wrote_it() -> None:
    from etcdward.store.snapshot import _snapshot_response

    blob = bytes(range(200))
    # header (field 1, skipped), remaining_bytes (2) = 300, blob (3), version (4, 3.5 only)
    msg = b"\x0a\x02\x08\x01" + b"\x10\xac\x02" + b"\x1a\xc8\x01" + blob + b"\x22\x053.5.0"
    assert _snapshot_response(msg) == (300, blob)
    assert _snapshot_response(b"\x1a\x02ab") == (0, b"ab")  # the last: proto3 leaves remaining_bytes 0 out


@pytest.mark.parametrize("cut", [b"", b"5\r\nab", b"5\r\nabcde", b"5\r\nabcde\r\n"])
def test_an_answer_cut_off_is_a_broken_connection_not_an_answer(cut: bytes) -> None:
    from etcdward.store.http import BrokenConnection, Connection

    async def go() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(cut)
        reader.feed_eof()
        conn = Connection(reader, None, None)  # type: ignore[arg-type]  # reading only
        with pytest.raises(BrokenConnection):
            [p async for p in conn.pieces({b"transfer-encoding": b"chunked"})]

    asyncio.run(go())


def test_a_whole_chunked_answer_reads_whole() -> None:
    from etcdward.store.http import Connection

    async def go() -> list[bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(b"5\r\nabcde\r\n3;x=1\r\nfgh\r\n0\r\nTrailer: 1\r\n\r\n")
        reader.feed_eof()
        return [p async for p in Connection(reader, None, None).pieces({b"transfer-encoding": b"chunked"})]  # type: ignore[arg-type]

    assert asyncio.run(go()) == [b"abcde", b"fgh"]
