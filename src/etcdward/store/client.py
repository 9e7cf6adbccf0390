"""The etcd adapter: THE ONLY module that imports the etcd client library (etcd3aio).

Contract
- Every method raises only `store.errors.*` (gRPC/library errors are mapped here).
- CAS writes: `create` (create_revision == 0), `update`/`delete_if` (mod_revision == N). They
  return False when the compare lost; they never retry a lost compare.
- Membership and maintenance RPCs (`add_learner`, `promote`, `remove_member`, `move_leader`,
  `defragment`, `compact`, `disarm`) are sent ONCE
  (`max_attempts=1`): they are not idempotent, so retrying is the caller's decision
  (see `retry.py`), after it has re-read the member list.
- Reads and KV writes use a short client-side retry for transport errors only.
- One client talks to one endpoint (per-member calls such as `status` must not be spread
  round-robin over several members).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from etcd3aio import (
    AlarmType,
    Etcd3Client,
    EtcdConnectionError,
    EtcdError,
    EtcdPermissionDeniedError,
    EtcdTransientError,
    EtcdUnauthenticatedError,
    prefix_range_end,
)

from ..keys import HEALTH
from . import errors as E
from .keepalive import KeepAliveStream
from .types import KV, Alarm, Member, Status, WatchEvent

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
_ALARM_NAMES = {int(a): a.name for a in AlarmType}


def _cancelled(op: str) -> BaseException:
    """What a CancelledError out of a gRPC call is: our own task being cancelled (raise it on),
    or the call cancelled under us because its channel was closed (after a client certificate
    renewal, use_client_cert): a temporary error the caller answers by calling again."""
    task = asyncio.current_task()
    if task is None or task.cancelling():
        return asyncio.CancelledError()
    return E.Unavailable(f"{op}: the call was cancelled (its channel closed)")


def _member(m: Any) -> Member:
    return Member(int(m.ID), m.name, tuple(m.peerURLs), tuple(m.clientURLs), bool(m.isLearner))


def _kv(kv: Any) -> KV:
    return KV(kv.key.decode(), bytes(kv.value), int(kv.create_revision), int(kv.mod_revision), int(kv.lease))


def _watch_event(ev: Any, with_prev: bool) -> WatchEvent:
    prev = bytes(ev.prev_kv.value) if with_prev and ev.HasField("prev_kv") else None
    return WatchEvent("delete" if ev.type == 1 else "put", ev.kv.key.decode(), bytes(ev.kv.value),
                      int(ev.kv.mod_revision), int(ev.kv.create_revision), prev)


def map_error(exc: BaseException, op: str) -> E.StoreError:
    """Turn a library/gRPC error into the most specific store error."""
    if isinstance(exc, E.StoreError):
        return exc
    if isinstance(exc, grpc.aio.AioRpcError):
        detail = exc.details() or exc.code().name
        kind = E.classify(detail)
        if kind is None:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                kind = E.Unavailable
            elif code == grpc.StatusCode.PERMISSION_DENIED:
                kind = E.PermissionDenied
            elif code == grpc.StatusCode.NOT_FOUND:
                kind = E.MemberNotFound
            else:
                kind = E.Other
        return kind(f"{op}: {detail}")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return E.Unavailable(f"{op}: timed out")
    if isinstance(exc, (EtcdPermissionDeniedError, EtcdUnauthenticatedError)):
        return E.PermissionDenied(str(exc))
    if isinstance(exc, (EtcdConnectionError, EtcdTransientError, EtcdError)):
        msg = str(exc)
        return (E.classify(msg) or E.Unavailable)(msg)
    return E.Other(f"{op}: {exc}")


# etcd restarts under its supervisor in about a second; gRPC's default reconnect backoff (1 s,
# growing to 120 s) would keep us away far longer than that.
FAST_RECONNECT = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 2000))


def set_fast_reconnect(client: Etcd3Client) -> bool:
    """etcd3aio has no public way to pass gRPC channel options: this is the one place that
    reaches into its private `_manager.grpc_options` (pinned etcd3aio 0.3.0). A client upgrade
    that moves it fails `tests/test_store_adapter.py`; in production it only logs, and
    reconnects are then slower, not wrong."""
    manager = getattr(client, "_manager", None)
    options = getattr(manager, "grpc_options", None)
    if not isinstance(options, list):
        log.warning("etcd3aio has no _manager.grpc_options; gRPC reconnects keep their default backoff")
        return False
    manager.grpc_options = [*options, *FAST_RECONNECT]  # type: ignore[union-attr]
    return True


class Store:
    """An etcd client bound to one endpoint, over mutual TLS."""

    def __init__(self, endpoint: str, *, ca: bytes, cert: bytes, key: bytes,
                 server_name: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        # etcd3aio only accepts IPv4 literals; our endpoints are https://127.0.0.1:<port>.
        self.endpoint = endpoint.removeprefix("https://").removeprefix("http://")
        self.timeout = timeout
        self._ca, self._server_name = ca, server_name
        self._client = self._new_client(cert, key)
        self._connected = False
        self._retiring: set[asyncio.Task[None]] = set()  # old channels closing after a certificate change
        self._keepalive = KeepAliveStream()  # every lease's renewals, on one stream

    def _new_client(self, cert: bytes, key: bytes) -> Etcd3Client:
        client = Etcd3Client([self.endpoint], ca_cert=self._ca, cert_key=key, cert_chain=cert,
                             tls_server_name=self._server_name, rpc_max_attempts=2)
        set_fast_reconnect(client)
        return client

    async def use_client_cert(self, cert: bytes, key: bytes, grace: float) -> None:
        """Make new calls use a new channel with this client certificate (gRPC keeps the one it
        was given for every reconnect, so a renewed certificate needs a new channel). The old
        channel is closed after grace seconds: calls already on it finish, and its watches end
        with Unavailable, which their callers answer by watching again (on the new channel)."""
        new = self._new_client(cert, key)
        if not self._connected:
            self._client = new
            return
        await new.connect()
        old, self._client = self._client, new

        async def close_later() -> None:
            try:
                await asyncio.sleep(grace)
            finally:
                await old.close()

        task = asyncio.create_task(close_later(), name="store-close-old-channel")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @classmethod
    def from_files(cls, endpoint: str, ca: Path, cert: Path, key: Path, **kw: Any) -> Store:
        return cls(endpoint, ca=ca.read_bytes(), cert=cert.read_bytes(), key=key.read_bytes(), **kw)

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if not self._connected:
            await self._client.connect()
            self._connected = True

    async def close(self) -> None:
        self._keepalive.close()
        for task in list(self._retiring):
            task.cancel()  # closes its channel now
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=5.0)
        if self._connected:
            self._connected = False
            await self._client.close()

    async def _call(self, op: str, coro_fn: Any, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        try:
            # asyncio.timeout, not wait_for: it runs in the caller's task, so a cancellation is
            # never swallowed (see tasks.py)
            async with asyncio.timeout(timeout or self.timeout):
                return await coro_fn(*args, **kw)
        except asyncio.CancelledError:
            raise _cancelled(op) from None
        except BaseException as exc:  # noqa: BLE001 - mapped below, never leaks
            raise map_error(exc, op) from None

    # -- health --------------------------------------------------------------------------
    async def ready(self, timeout: float = 2.0) -> None:
        """A linearizable read: passes only on a voting member of a cluster with quorum."""
        await self._call("ready", self._client.kv.get, HEALTH, timeout=timeout, max_attempts=1)

    async def status(self, timeout: float | None = None) -> Status:
        r = await self._call("status", self._client.maintenance.status, timeout=timeout, max_attempts=1)
        return Status(
            member_id=int(r.header.member_id), cluster_id=int(r.header.cluster_id), leader_id=int(r.leader),
            raft_term=int(r.raftTerm), raft_index=int(r.raftIndex), is_learner=bool(r.isLearner),
            version=r.version, db_size=int(r.dbSize), errors=tuple(r.errors),
            raft_applied_index=int(r.raftAppliedIndex), db_size_in_use=int(r.dbSizeInUse),
            db_size_quota=int(getattr(r, "dbSizeQuota", 0) or 0), revision=int(r.header.revision),
        )

    async def alarms(self, timeout: float | None = None) -> list[Alarm]:
        """The cluster's active alarms (every member's). etcd answers this through raft: a voter
        with quorum only, so callers ask once per view, never in a loop."""
        r = await self._call("alarm list", self._client.maintenance.alarms, timeout=timeout, max_attempts=1)
        return [Alarm(int(a.memberID), _ALARM_NAMES.get(int(a.alarm), str(a.alarm))) for a in r.alarms]

    # -- kv ------------------------------------------------------------------------------
    async def get(self, key: str) -> KV | None:
        r = await self._call("get", self._client.kv.get, key)
        return _kv(r.kvs[0]) if r.kvs else None

    async def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        """All keys under prefix and the store revision they were read at."""
        r = await self._call("get_prefix", self._client.kv.get, prefix, prefix_range_end(prefix))
        return [_kv(kv) for kv in r.kvs], int(r.header.revision)

    async def put(self, key: str, value: bytes | str, lease: int = 0) -> int:
        r = await self._call("put", self._client.kv.put, key, value, lease)
        return int(r.header.revision)

    async def create(self, key: str, value: bytes | str, lease: int = 0) -> bool:
        """Write key only if it does not exist."""
        kv = self._client.kv
        r = await self._call("create", kv.txn, [kv.txn_compare_create_revision(key, 0)],
                             [kv.txn_op_put(key, value, lease=lease)], max_attempts=1)
        return bool(r.succeeded)

    async def update(self, key: str, value: bytes | str, mod_revision: int, lease: int = 0) -> bool:
        """Write key only if it was not modified since mod_revision."""
        kv = self._client.kv
        cmp = _mod_compare(kv, key, mod_revision)
        r = await self._call("update", kv.txn, [cmp], [kv.txn_op_put(key, value, lease=lease)], max_attempts=1)
        return bool(r.succeeded)

    async def delete_if(self, key: str, mod_revision: int) -> bool:
        kv = self._client.kv
        r = await self._call("delete", kv.txn, [_mod_compare(kv, key, mod_revision)], [kv.txn_op_delete(key)],
                             max_attempts=1)
        return bool(r.succeeded)

    async def delete(self, key: str) -> bool:
        r = await self._call("delete", self._client.kv.delete, key)
        return int(r.deleted) > 0


    async def watch_prefix(self, prefix: str, start_revision: int,
                           prev_kv: bool = False) -> AsyncIterator[list[WatchEvent]]:
        """Batches of events under prefix from start_revision on; with prev_kv each event also
        carries the value before it (what a delete removed).

        Raises Compacted (an Unavailable) when etcd has compacted start_revision away, and
        Unavailable when the watch is cancelled otherwise: the caller re-lists and watches again
        from the new revision (etcd3aio would otherwise hang silently).
        """
        responses = self._client.watch.watch(prefix, prefix_range_end(prefix), start_revision, prev_kv=prev_kv)
        try:
            async for resp in responses:
                if resp.compact_revision:
                    raise E.Compacted(f"watch {prefix} from revision {start_revision}: compacted at "
                                      f"{resp.compact_revision}", int(resp.compact_revision))
                if resp.canceled:
                    raise E.Unavailable(f"watch {prefix} cancelled ({resp.cancel_reason or 'no reason given'})")
                if resp.events:
                    yield [_watch_event(ev, prev_kv) for ev in resp.events]
        except GeneratorExit:  # the caller stopped iterating: closing is not an error
            raise
        except asyncio.CancelledError:
            raise _cancelled(f"watch {prefix}") from None
        except E.StoreError:
            raise
        except BaseException as exc:  # noqa: BLE001
            raise map_error(exc, "watch") from None
        finally:
            # Closed here, not left to the garbage collector: asyncio would close it in a task
            # of its own, whose error nobody awaits.
            with contextlib.suppress(Exception):
                await responses.aclose()

    async def follow_prefix(self, prefix: str, retry_after: float = 0.5) -> AsyncIterator[list[WatchEvent]]:
        """Batches of events under prefix from now on, for as long as the caller iterates: a
        watch that fails (etcd restarting, compacted) is started again from the current
        revision, and an empty batch is yielded then: something may have changed meanwhile."""
        while True:
            try:
                _, rev = await self.get_prefix(prefix)
                yield []
                async with contextlib.aclosing(self.watch_prefix(prefix, rev + 1)) as batches:
                    async for batch in batches:
                        yield batch
            except E.StoreError as e:
                log.debug("watch %s: %s; watching again", prefix, e)
            await asyncio.sleep(retry_after)

    # -- leases --------------------------------------------------------------------------
    async def grant_lease(self, ttl: int) -> int:
        r = await self._call("lease grant", self._client.lease.grant, ttl)
        return int(r.ID)

    async def refresh_lease(self, lease_id: int) -> int:
        """One keep-alive round trip; returns the remaining TTL (<= 0: the lease is gone)."""
        return (await self.keep_alive(lease_id))[0]

    async def keep_alive(self, lease_id: int) -> tuple[int, int]:
        """One keep-alive round trip: (the remaining TTL, <= 0: the lease is gone; the raft term
        of the local etcd's answer). Only the etcd leader renews: a follower forwards it there.
        On the process's one keep-alive stream (keepalive.py)."""
        service = self._client.lease
        if KeepAliveStream.supported(service):
            return await self._call("lease keepalive", self._keepalive.renew, service, lease_id)

        async def once() -> tuple[int, int]:
            call = service.keep_alive(lease_id)
            try:
                async for resp in call:
                    return int(resp.TTL), int(resp.header.raft_term)
                return 0, 0
            finally:
                call.cancel()

        return await self._call("lease keepalive", once)

    async def lease_remaining(self, lease_id: int) -> tuple[int, int]:
        """(seconds the lease has left, its granted TTL); the first is -1 once it is gone."""
        r = await self._call("lease time-to-live", self._client.lease.time_to_live, lease_id, timeout=2.0,
                             max_attempts=1)
        return int(r.TTL), int(r.grantedTTL)

    async def revoke_lease(self, lease_id: int) -> None:
        try:
            await self._call("lease revoke", self._client.lease.revoke, lease_id, timeout=2.0, max_attempts=1)
        except E.StoreError as e:
            if "not found" not in str(e):
                raise

    # -- membership (sent once; the caller owns the retry) -------------------------------
    async def members(self, timeout: float | None = None, linearizable: bool = True) -> list[Member]:
        """linearizable=False: the local member's own view (etcd 3.5 confirms a linearizable
        list with a quorum round; 3.4 always answers locally)."""
        r = await self._call("member list", self._client.cluster.member_list, timeout=timeout,
                             linearizable=linearizable)
        return [_member(m) for m in r.members]

    async def add_learner(self, peer_url: str) -> tuple[Member, list[Member]]:
        r = await self._call("member add", self._client.cluster.member_add, [peer_url], is_learner=True,
                             max_attempts=1)
        return _member(r.member), [_member(m) for m in r.members]

    async def promote(self, member_id: int) -> list[Member]:
        r = await self._call("member promote", self._client.cluster.member_promote, member_id, max_attempts=1)
        return [_member(m) for m in r.members]

    async def remove_member(self, member_id: int) -> list[Member]:
        r = await self._call("member remove", self._client.cluster.member_remove, member_id, max_attempts=1)
        return [_member(m) for m in r.members]

    async def move_leader(self, target_id: int) -> None:
        await self._call("move leader", self._client.maintenance.move_leader, target_id, max_attempts=1,
                         timeout=10.0)

    # -- maintenance (sent once) ----------------------------------------------------------
    async def defragment(self, timeout: float = 600.0) -> None:
        """Defragment THIS member's backend (it blocks reads and writes on it while it runs)."""
        await self._call("defragment", self._client.maintenance.defragment, timeout=timeout, max_attempts=1)

    async def compact(self, revision: int, timeout: float = 60.0) -> None:
        """Compact the cluster's history up to revision, waiting until the backend applied it;
        a revision already compacted counts as done."""
        try:
            await self._call("compact", self._client.kv.compact, revision, physical=True, timeout=timeout,
                             max_attempts=1)
        except E.Other as e:
            if "compacted" not in str(e):
                raise

    async def disarm(self, alarm: Alarm) -> None:
        await self._call("alarm disarm", self._client.maintenance.alarm_deactivate, AlarmType[alarm.kind],
                         member_id=alarm.member_id, max_attempts=1)

    async def snapshot(self, sink: Callable[[bytes], Awaitable[None]]) -> int:
        """Stream a snapshot of this member's backend to sink, chunk by chunk as etcd sends it
        (the bbolt db, then etcd's sha256 of it); returns its size. An error of the sink
        (a full disk...) stops the stream and is raised as it is, not as an etcd error."""
        failed: list[BaseException] = []

        async def save() -> int:
            n = 0
            async with contextlib.aclosing(self._client.maintenance.snapshot(max_attempts=1)) as chunks:
                async for chunk in chunks:
                    try:
                        await sink(chunk)
                    except Exception as e:  # noqa: BLE001 - re-raised below, outside the error mapping
                        failed.append(e)
                        return n
                    n += len(chunk)
            return n

        n = await self._call("snapshot", save, timeout=600.0)
        if failed:
            raise failed[0]
        return n


def _mod_compare(kv: Any, key: str, mod_revision: int) -> Any:
    # etcd3aio has no helper for MOD compares; build it from the version helper's message type.
    cmp = kv.txn_compare_version(key, 0)
    cmp.target = type(cmp).MOD
    cmp.mod_revision = mod_revision
    return cmp
