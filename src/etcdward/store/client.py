"""The etcd adapter: etcd's v3 API as the JSON gateway on the client port serves it (wire.py),
over kept-alive HTTPS connections in the event loop (http.py).

Why not a gRPC client: gRPC (with etcd3aio) was ~14 MiB of a controller's ~70 MiB RSS, its
file-backed pages and six threads of its own, for calls that the gateway answers the same way
on the same port with the same certificates (bench/footprint.py; README, "Footprint").

Contract
- Every method raises only `store.errors.*`.
- CAS writes: `create` (create_revision == 0), `update`/`delete_if` (mod_revision == N). They
  return False when the compare lost; they never retry a lost compare.
- Membership and maintenance calls (`add_learner`, `promote`, `remove_member`, `move_leader`,
  `defragment`, `compact`, `disarm`) are sent ONCE: they are not idempotent, so retrying is the
  caller's decision (see `retry.py`), after it has re-read the member list.
- Reads, puts, lease grants and renewals are sent again within their timeout
  while etcd refuses them for a moment (leader changed, no leader: `Refused`), as etcd's Go
  client does for reads; and at once when a kept-alive connection turns out to have been closed
  by etcd (it restarted) before any answer came. An etcd that cannot be reached is reported at
  once (Unavailable).
- One client talks to one endpoint (per-member calls such as `status` must not be spread
  over several members).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from ..keys import HEALTH
from ..retry import retry
from . import errors as E
from . import wire
from .http import BrokenConnection, Endpoint, tls_context
from .snapshot import snapshot_blobs
from .types import KV, Alarm, Member, Status, WatchEvent

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
REFUSED_BACKOFF = (0.05, 0.1, 0.2)  # a leader election takes etcd ~1-2 s


class Store:
    """An etcd client bound to one endpoint, over mutual TLS."""

    def __init__(self, endpoint: str, *, ca: bytes, cert: bytes, key: bytes,
                 server_name: str = "localhost", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint.removeprefix("https://").removeprefix("http://")
        host, _, port = self.endpoint.rpartition(":")
        self.timeout = timeout
        self._ca, self._client_cert = ca, (cert, key)
        self._http = Endpoint(host, int(port), tls_context(ca, cert, key), server_name)

    async def use_client_cert(self, cert: bytes, key: bytes, grace: float) -> None:
        """Make new calls use this client certificate (a TLS connection keeps the one it was
        made with). The connections open now are closed after grace seconds: calls already on
        them finish, and their watches end with Unavailable, which their callers answer by
        watching again (on a new connection)."""
        self._client_cert = (cert, key)
        self._http.ctx = tls_context(self._ca, cert, key)
        self._http.retire(grace)

    @classmethod
    def from_files(cls, endpoint: str, ca: Path, cert: Path, key: Path, **kw: Any) -> Store:
        return cls(endpoint, ca=ca.read_bytes(), cert=cert.read_bytes(), key=key.read_bytes(), **kw)

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connections are made on first use; nothing to do ahead (kept for the callers that
        open a Store as a context)."""

    async def close(self) -> None:
        await self._http.close()

    async def _post(self, op: str, path: str, body: dict[str, Any], *, timeout: float | None = None,
                    repeatable: bool = False) -> dict[str, Any]:
        """One call, within timeout (default: the store's). A repeatable one (reads, plain writes,
        lease renewals) is sent again, as etcd's own client does for reads, while etcd refuses it
        for a moment (leader changed, no leader) and time is left. An etcd that cannot be
        reached is reported at once."""
        budget = timeout or self.timeout
        refused: list[BaseException] = []
        try:
            # asyncio.timeout, not wait_for: it runs in the caller's task, so a cancellation is
            # never swallowed (see tasks.py)
            async with asyncio.timeout(budget):
                if not repeatable:
                    return await self._post_once(op, path, body, False)
                return await retry(lambda: self._post_once(op, path, body, True), deadline=budget,
                                   backoff=REFUSED_BACKOFF, what=op, retry_on=(E.Refused, E.LeaderChanged),
                                   on_retry=lambda e, _n, _d: refused.append(e))
        except TimeoutError:
            if refused:  # what etcd said is more use than "timed out"
                raise refused[-1] from None
            raise E.Unavailable(f"{op}: timed out") from None

    async def _post_once(self, op: str, path: str, body: dict[str, Any], repeatable: bool) -> dict[str, Any]:
        try:
            status, raw = await self._http.request(path, body, repeatable)
        except BrokenConnection as e:
            raise E.Unavailable(f"{op}: {e}") from None
        except Exception as e:  # noqa: BLE001 - the contract: only store errors leave (as map_error did)
            raise E.Unavailable(f"{op}: {type(e).__name__}: {e}") from None
        return wire.answer(op, status, raw)

    # -- health --------------------------------------------------------------------------
    async def ready(self, timeout: float = 2.0) -> None:
        """A linearizable read: passes only on a voting member of a cluster with quorum."""
        await self._post("ready", "/v3/kv/range", wire.key_range(HEALTH, False), timeout=timeout)

    async def status(self, timeout: float | None = None) -> Status:
        return wire.status(await self._post("status", "/v3/maintenance/status", {}, timeout=timeout))

    async def alarms(self, timeout: float | None = None) -> list[Alarm]:
        """The cluster's active alarms (every member's). etcd answers this through raft: a voter
        with quorum only, so callers ask once per view, never in a loop."""
        return wire.alarms(await self._post("alarm list", "/v3/maintenance/alarm", {"action": "GET"},
                                            timeout=timeout))

    # -- kv ------------------------------------------------------------------------------
    async def get(self, key: str) -> KV | None:
        kvs, _ = wire.range_answer(await self._post("get", "/v3/kv/range", wire.key_range(key, False),
                                                    repeatable=True))
        return kvs[0] if kvs else None

    async def get_prefix(self, prefix: str) -> tuple[list[KV], int]:
        """All keys under prefix and the store revision they were read at."""
        return wire.range_answer(await self._post("get_prefix", "/v3/kv/range", wire.key_range(prefix, True),
                                                  repeatable=True))

    async def put(self, key: str, value: bytes | str, lease: int = 0) -> int:
        r = await self._post("put", "/v3/kv/put", _put(key, value, lease), repeatable=True)
        return wire.revision(r)

    async def create(self, key: str, value: bytes | str, lease: int = 0) -> bool:
        """Write key only if it does not exist."""
        cmp = {"key": wire.b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        return await self._txn("create", cmp, {"request_put": _put(key, value, lease)})

    async def update(self, key: str, value: bytes | str, mod_revision: int, lease: int = 0) -> bool:
        """Write key only if it was not modified since mod_revision."""
        return await self._txn("update", _mod_compare(key, mod_revision), {"request_put": _put(key, value, lease)})

    async def delete_if(self, key: str, mod_revision: int) -> bool:
        return await self._txn("delete", _mod_compare(key, mod_revision), {"request_delete_range": {"key": wire.b64(key)}})

    async def _txn(self, op: str, compare: dict[str, Any], then: dict[str, Any]) -> bool:
        r = await self._post(op, "/v3/kv/txn", {"compare": [compare], "success": [then]})
        return bool(r.get("succeeded", False))

    async def delete(self, key: str) -> bool:
        # not repeatable: a delete etcd applied before its answer was lost would read "nothing deleted"
        r = await self._post("delete", "/v3/kv/deleterange", {"key": wire.b64(key)})
        return int(r.get("deleted", 0)) > 0

    async def watch_prefix(self, prefix: str, start_revision: int,
                           prev_kv: bool = False) -> AsyncIterator[list[WatchEvent]]:
        """Batches of events under prefix from start_revision on; with prev_kv each event also
        carries the value before it (what a delete removed).

        Raises Compacted (an Unavailable) when etcd has compacted start_revision away, and
        Unavailable when the watch ends otherwise (etcd restarting, the connection closed): the
        caller re-lists and watches again from the new revision.
        """
        op = f"watch {prefix}"
        body = {"create_request": {**wire.key_range(prefix, True), "start_revision": str(start_revision),
                                   "prev_kv": prev_kv}}
        try:
            async with self._http.stream("/v3/watch", body) as (status, lines):
                async for line in lines:
                    result = line.get("result")
                    if status != 200 or result is None:
                        raise wire.error(op, status, line)
                    if int(result.get("compact_revision", 0)):
                        raise E.Compacted(f"watch {prefix} from revision {start_revision}: compacted at "
                                          f"{result['compact_revision']}", int(result["compact_revision"]))
                    if result.get("canceled"):
                        raise E.Unavailable(f"{op} cancelled ({result.get('cancel_reason') or 'no reason given'})")
                    if result.get("events"):
                        yield [wire.watch_event(ev, prev_kv) for ev in result["events"]]
        except BrokenConnection as e:
            raise E.Unavailable(f"{op}: {e}") from None
        except (E.StoreError, GeneratorExit):
            raise
        except Exception as e:  # noqa: BLE001 - only store errors leave
            raise E.Unavailable(f"{op}: {type(e).__name__}: {e}") from None
        raise E.Unavailable(f"{op}: etcd ended the watch")

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
        r = await self._post("lease grant", "/v3/lease/grant", {"TTL": str(ttl)}, repeatable=True)
        return int(r.get("ID", 0))

    async def refresh_lease(self, lease_id: int) -> int:
        """One keep-alive round trip; returns the remaining TTL (<= 0: the lease is gone)."""
        return (await self.keep_alive(lease_id))[0]

    async def keep_alive(self, lease_id: int) -> tuple[int, int]:
        """One keep-alive round trip: (the remaining TTL, <= 0: the lease is gone; the raft term
        of the local etcd's answer). Only the etcd leader renews: a follower forwards it there.
        The gateway answers one request with a stream of one answer and ends it; on a kept-alive
        connection this costs no more than any other call."""
        r = await self._post("lease keepalive", "/v3/lease/keepalive", {"ID": str(lease_id)}, repeatable=True)
        result = r.get("result") or {}
        return int(result.get("TTL", 0)), int((result.get("header") or {}).get("raft_term", 0))

    async def lease_remaining(self, lease_id: int) -> tuple[int, int]:
        """(seconds the lease has left, its granted TTL); the first is -1 once it is gone."""
        r = await self._post("lease time-to-live", "/v3/lease/timetolive", {"ID": str(lease_id)}, timeout=2.0)
        return int(r.get("TTL", 0)), int(r.get("grantedTTL", 0))

    async def revoke_lease(self, lease_id: int) -> None:
        try:
            await self._post("lease revoke", "/v3/lease/revoke", {"ID": str(lease_id)}, timeout=2.0)
        except E.StoreError as e:
            if "not found" not in str(e):
                raise

    # -- membership (sent once; the caller owns the retry) -------------------------------
    async def members(self, timeout: float | None = None, linearizable: bool = True) -> list[Member]:
        """linearizable=False: the local member's own view (etcd 3.5 confirms a linearizable
        list with a quorum round; 3.4 always answers locally and ignores the field)."""
        body = {"linearizable": True} if linearizable else {}
        return wire.members(await self._post("member list", "/v3/cluster/member/list", body, timeout=timeout,
                                             repeatable=True))

    async def add_learner(self, peer_url: str) -> tuple[Member, list[Member]]:
        r = await self._post("member add", "/v3/cluster/member/add", {"peerURLs": [peer_url], "isLearner": True})
        return wire.member(r.get("member") or {}), wire.members(r)

    async def promote(self, member_id: int) -> list[Member]:
        return wire.members(await self._post("member promote", "/v3/cluster/member/promote", {"ID": str(member_id)}))

    async def remove_member(self, member_id: int) -> list[Member]:
        return wire.members(await self._post("member remove", "/v3/cluster/member/remove", {"ID": str(member_id)}))

    async def move_leader(self, target_id: int) -> None:
        await self._post("move leader", "/v3/maintenance/transfer-leadership", {"targetID": str(target_id)},
                         timeout=10.0)

    # -- maintenance (sent once) ----------------------------------------------------------
    async def defragment(self, timeout: float = 600.0) -> None:
        """Defragment THIS member's backend (it blocks reads and writes on it while it runs)."""
        await self._post("defragment", "/v3/maintenance/defragment", {}, timeout=timeout)

    async def compact(self, revision: int, timeout: float = 60.0) -> None:
        """Compact the cluster's history up to revision, waiting until the backend applied it;
        a revision already compacted counts as done."""
        try:
            await self._post("compact", "/v3/kv/compaction", {"revision": str(revision), "physical": True},
                             timeout=timeout)
        except E.Other as e:
            if "compacted" not in str(e):
                raise

    async def disarm(self, alarm: Alarm) -> None:
        await self._post("alarm disarm", "/v3/maintenance/alarm",
                         {"action": "DEACTIVATE", "memberID": str(alarm.member_id), "alarm": alarm.kind})

    async def snapshot(self, sink: Callable[[bytes], Awaitable[None]]) -> int:
        """Stream a snapshot of this member's backend to sink, chunk by chunk as etcd sends it
        (the bbolt db, then etcd's sha256 of it); returns its size. An error of the sink
        (a full disk...) stops the stream and is raised as it is, not as an etcd error.
        The one call over gRPC (snapshot.py): through the gateway it costs etcd 3x the CPU."""
        n, failed = 0, []
        ctx = tls_context(self._ca, *self._client_cert, alpn="h2")
        try:
            async with asyncio.timeout(600.0):
                blobs = snapshot_blobs(self._http.host, self._http.port, ctx, self._http.server_name)
                async with contextlib.aclosing(blobs):
                    async for chunk in blobs:
                        try:
                            await sink(chunk)
                        except Exception as e:  # noqa: BLE001 - the sink's own, raised as it is below
                            failed.append(e)
                            break
                        n += len(chunk)
        except TimeoutError:
            raise E.Unavailable("snapshot: timed out") from None
        except BrokenConnection as e:
            raise E.Unavailable(f"snapshot: {e}") from None
        except (E.StoreError, GeneratorExit):
            raise
        except Exception as e:  # noqa: BLE001 - only store errors leave (the sink's own are in failed)
            raise E.Unavailable(f"snapshot: {type(e).__name__}: {e}") from None
        if failed:
            raise failed[0]
        return n


def _put(key: str, value: bytes | str, lease: int) -> dict[str, str]:
    body = {"key": wire.b64(key), "value": wire.b64(value)}
    if lease:
        body["lease"] = str(lease)
    return body


def _mod_compare(key: str, mod_revision: int) -> dict[str, str]:
    return {"key": wire.b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}
