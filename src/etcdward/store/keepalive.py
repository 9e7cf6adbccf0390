"""One LeaseKeepAlive stream per channel, shared by every lease of the process.

etcd3aio opens a new bidirectional stream for each renewal (`LeaseService.keep_alive`): setting
one up and tearing it down costs several times the renewal itself, and an idle controller does
little else (its liveness lease, which the reconciler election shares). etcd's LeaseKeepAlive
takes any number of requests, for any lease, on one stream and answers each in order, so this
keeps one open and sends a request per renewal.

A waiter that gives up (its timeout, its task cancelled) closes the stream: a late answer must
never be taken as the answer to a later request (the lease holder dates its renewal from when
it asked). The next renewal opens a new stream, as does a renewal after a channel change
(client certificate renewal) or after the stream failed.

etcd3aio has no public way to send more than one request on a stream: this reaches into its
`LeaseService._stub` (pinned etcd3aio 0.3.0). Without it, each renewal opens its own stream as
before (tests/test_store_adapter.py fails on a client upgrade that moves it).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from etcd3aio._protobuf import LeaseKeepAliveRequest

from . import errors as E


class KeepAliveStream:
    def __init__(self) -> None:
        self._service: Any = None  # the LeaseService the open stream belongs to
        self._call: Any = None
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting: dict[int, collections.deque[asyncio.Future[tuple[int, int]]]] = {}
        self._reader: asyncio.Task[None] | None = None

    @staticmethod
    def supported(service: Any) -> bool:
        return getattr(service, "_stub", None) is not None

    async def renew(self, service: Any, lease_id: int) -> tuple[int, int]:
        """(remaining TTL, raft term) of one renewal of lease_id on the shared stream."""
        if self._call is None or self._service is not service:
            self._open(service)
        call = self._call
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(lease_id, collections.deque()).append(fut)
        self._requests.put_nowait(LeaseKeepAliveRequest(ID=lease_id))
        try:
            return await fut
        except BaseException:
            if self._call is call:  # gave up waiting (timeout, cancel): its answer may still come
                self.close()
            raise

    def _open(self, service: Any) -> None:
        self.close()
        self._service = service
        requests: asyncio.Queue[Any] = asyncio.Queue()
        self._requests = requests

        async def send() -> Any:
            while True:
                yield await requests.get()

        metadata = getattr(service, "_metadata", ()) or None
        self._call = service._stub.LeaseKeepAlive(send(), metadata=metadata)
        self._reader = asyncio.create_task(self._read(self._call), name="lease-keepalive-stream")

    async def _read(self, call: Any) -> None:
        try:
            async for resp in call:
                queue = self._waiting.get(int(resp.ID))
                while queue:
                    fut = queue.popleft()
                    if not fut.done():
                        fut.set_result((int(resp.TTL), int(resp.header.raft_term)))
                        break
            error: BaseException = E.Unavailable("lease keepalive: the stream ended")
        except asyncio.CancelledError:
            error = E.Unavailable("lease keepalive: the stream was closed")
        except Exception as exc:  # noqa: BLE001 - handed to the waiters, who map it
            error = exc
        if self._call is call:
            self._fail(error)
            self._call = self._service = None

    def _fail(self, error: BaseException) -> None:
        waiting, self._waiting = self._waiting, {}
        for queue in waiting.values():
            for fut in queue:
                if not fut.done():
                    fut.set_exception(error)

    def close(self) -> None:
        """Close the stream (the waiters get an error); the next renewal opens a new one."""
        call, reader = self._call, self._reader
        self._call = self._service = self._reader = None
        self._fail(E.Unavailable("lease keepalive: the stream was closed"))
        if call is not None:
            call.cancel()
        if reader is not None and not reader.done():
            reader.cancel()
