"""The etcd adapter's two reaches into etcd3aio's internals (channel options, the lease stub for
one keep-alive stream): a client upgrade that moves them must fail here, not slow down
reconnects or renewals in production unnoticed."""

from __future__ import annotations

import asyncio
import gc

import pytest
from etcd3aio import Etcd3Client

from etcdward.store.client import FAST_RECONNECT, set_fast_reconnect
from etcdward.store.keepalive import KeepAliveStream
from tests.cluster import Cluster, run_async
from tests.prereqs import needs


def test_fast_reconnect_options_reach_the_channel_options() -> None:
    client = Etcd3Client(["127.0.0.1:1"])
    assert set_fast_reconnect(client)
    options = client._manager.grpc_options  # noqa: SLF001 - exactly what this test guards
    for option in FAST_RECONNECT:
        assert option in options


def test_a_client_without_the_private_attribute_is_tolerated() -> None:
    class Bare:
        pass

    assert set_fast_reconnect(Bare()) is False  # type: ignore[arg-type]


def test_the_lease_service_has_the_stub_the_keepalive_stream_uses() -> None:
    async def go() -> None:
        client = Etcd3Client(["127.0.0.1:1"])
        await client.connect()  # makes the channel and the stubs; does not dial
        try:
            assert KeepAliveStream.supported(client.lease)  # else every renewal opens its own stream
        finally:
            await client.close()

    run_async(go())


@needs("etcd")
def test_renewals_of_every_lease_share_one_stream(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")

    async def go() -> None:
        async with n1.store() as st:
            a, b = await st.grant_lease(30), await st.grant_lease(30)
            for _ in range(5):
                (ttl_a, term), (ttl_b, _) = await asyncio.gather(st.keep_alive(a), st.keep_alive(b))
                assert 25 <= ttl_a <= 30 and 25 <= ttl_b <= 30 and term >= 1
            stream = st._keepalive._call  # noqa: SLF001 - the one stream is what this test is about
            assert stream is not None
            await st.revoke_lease(b)
            assert (await st.keep_alive(b))[0] <= 0  # gone: answered, not an error
            assert (await st.keep_alive(a))[0] > 0 and st._keepalive._call is stream  # noqa: SLF001
            # a waiter that gives up closes the stream (a late answer must not serve a later request)
            with pytest.raises(asyncio.TimeoutError):
                async with asyncio.timeout(0):
                    await st._keepalive.renew(st._client.lease, a)  # noqa: SLF001
            assert st._keepalive._call is None  # noqa: SLF001
            assert (await st.keep_alive(a))[0] > 0  # a new stream
            # a new channel (client certificate renewal) gets its own stream
            crt, key = n1.data.etcd_cert("client")
            await st.use_client_cert(crt.read_bytes(), key.read_bytes(), grace=0.1)
            assert (await st.keep_alive(a))[0] > 0
            assert st._keepalive._service is st._client.lease  # noqa: SLF001

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
