"""The etcd adapter's one reach into etcd3aio's internals: a client upgrade that moves it must
fail here, not slow down reconnects in production unnoticed."""

from __future__ import annotations

from etcd3aio import Etcd3Client

from etcdward.store.client import FAST_RECONNECT, set_fast_reconnect


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
