"""Watch events of EtcdMember records, built on an etcd watch of the records' prefix.

    since None or 0   synthetic ADDED events for the current records, then changes after
                      the revision they were listed at
    since N           changes after revision N (etcd's mod revision is the resourceVersion)

Each event is {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "record": EtcdMember | None,
"resourceVersion": str}; the caller renders objects (plain or as a Table). A revision etcd has
compacted away ends the stream with an ERROR event carrying a 410 Expired Status, as
kube-apiserver does; clients then list again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .. import records
from ..keys import ETCDMEMBERS
from ..records import EtcdMember, RecordError
from ..store import Store, WatchEvent
from ..store import errors as E
from .resource import list_members
from .selectors import Selector
from .status import KubeError, expired, unavailable

log = logging.getLogger(__name__)

BOOKMARK_EVERY = 10.0  # seconds between BOOKMARK events of an idle watch that asked for them


@dataclass(frozen=True)
class Event:
    type: str
    record: EtcdMember | None = None
    resource_version: str = ""
    error: KubeError | None = None


def _record(ev: WatchEvent) -> tuple[str, EtcdMember] | None:
    """(type, record) of one etcd event; None for a key that is not an EtcdMember."""
    name = ev.key.removeprefix(ETCDMEMBERS)
    try:
        if ev.kind == "delete":
            if ev.prev_value is None:
                return None
            # kube-apiserver reports a deletion at the revision of the delete
            return "DELETED", records.parse(ev.prev_value, name=name, mod_revision=ev.mod_revision)
        kind = "ADDED" if ev.create_revision == ev.mod_revision else "MODIFIED"
        return kind, records.parse(ev.value, name=name, mod_revision=ev.mod_revision,
                                   create_revision=ev.create_revision)
    except RecordError as e:
        log.debug("watch: %s is not an EtcdMember (%s); skipped", ev.key, e)
        return None


async def _changes(store: Store, start: int, queue: asyncio.Queue[Event | BaseException]) -> None:
    try:
        async for batch in store.watch_prefix(ETCDMEMBERS, start, prev_kv=True):
            for ev in batch:
                found = _record(ev)
                if found is not None:
                    await queue.put(Event(found[0], found[1], str(ev.mod_revision)))
    except asyncio.CancelledError:
        raise
    except BaseException as e:  # noqa: BLE001 - handed to the reader, which ends the stream
        await queue.put(e)


def _error_event(exc: BaseException, since: int) -> Event:
    if isinstance(exc, E.Compacted):
        return Event("ERROR", error=expired(f"too old resource version: {since} ({exc.compact_revision})"))
    return Event("ERROR", error=unavailable(f"watch of etcd ended: {exc}"))


async def events(store: Store, selector: Selector, since: int | None, bookmarks: bool,
                 duration: float) -> AsyncIterator[Event]:
    """The watch stream: it ends after `duration` seconds or on an error."""
    end = asyncio.get_running_loop().time() + duration
    last = since or 0
    if not since:
        listing = await list_members(store, selector)
        for rec in listing.records:
            yield Event("ADDED", rec, str(rec.resource_version))
        last = listing.revision
    queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
    task = asyncio.create_task(_changes(store, last + 1, queue), name="kube-watch")
    try:
        while True:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return
            try:
                item = await asyncio.wait_for(queue.get(), min(left, BOOKMARK_EVERY) if bookmarks else left)
            except TimeoutError:
                if bookmarks and end > asyncio.get_running_loop().time():
                    yield Event("BOOKMARK", resource_version=str(last))
                continue
            if isinstance(item, BaseException):
                yield _error_event(item, last)
                return
            last = int(item.resource_version)
            if item.record is not None and selector(item.record):
                yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def event_body(ev: Event, render: Any) -> dict[str, Any]:
    """The JSON of one event line; render(record) gives the object (plain or a Table)."""
    if ev.error is not None:
        return {"type": "ERROR", "object": ev.error.status()}
    if ev.record is None:  # BOOKMARK
        return {"type": "BOOKMARK", "object": render(None, ev.resource_version)}
    return {"type": ev.type, "object": render(ev.record, ev.resource_version)}
