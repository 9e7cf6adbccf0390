"""Taking a backup from this node's etcd: the snapshot streams from etcd straight into the
archive's snapshot member (hashed and written by a worker thread, writer.py) -> the archive ->
verified. Used by `etcdward backup` and by the controller's scheduled backups.

The heavy parts run in a worker thread (zlib, hashlib and file writes release the GIL): inside
the controller they must never hold up its event loop (join API, reconciler, leases), and in
the CLI they overlap with receiving the snapshot, so that a backup takes about as long as
`etcdctl snapshot save` (bench/backup.py)."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import errno
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from ..paths import DataDir
from ..store import Member, Store, Status
from .archive import PKI_FILES, ArchiveError, ArchiveExists, Manifest, SnapshotDigest, archive_name
from .writer import SnapshotPart, check_written, head_tar, member1_room, padded_member1, write_archive

BATCH = 1 << 20  # bytes handed to the worker thread at a time (etcd sends 32 KiB chunks)
IN_FLIGHT = 4  # batches queued for the worker at most: memory stays bounded when the disk is slow
# link(2) errors of a filesystem without hard links (vfat, some FUSE and network mounts)
NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS})
T = TypeVar("T")


@dataclass(frozen=True)
class Taken:
    path: Path | None  # None when streamed
    manifest: Manifest


@contextmanager
def temp_file(directory: Path, prefix: str) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    os.close(fd)  # mkstemp makes it 0600
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


class ToWorker:
    """Chunks from the event loop to one worker thread, in order, in batches; at most IN_FLIGHT
    batches wait (the receiving side waits for the worker instead of buffering the snapshot)."""

    def __init__(self, write: Callable[[list[bytes]], None]) -> None:
        self._write = write
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="backup-writer")  # one thread: in order
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()
        self._batch: list[bytes] = []
        self._size = 0

    async def feed(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._size += len(chunk)
        if self._size >= BATCH:
            await self._submit()

    async def _submit(self) -> None:
        batch, self._batch, self._size = self._batch, [], 0  # a list: joining would copy every byte
        self._pending.append(asyncio.get_running_loop().run_in_executor(self._pool, self._write, batch))
        while len(self._pending) > IN_FLIGHT or (self._pending and self._pending[0].done()):
            await self._pending.popleft()  # raises the worker's error (disk full...) here

    async def drain(self) -> None:
        if self._size:
            await self._submit()
        while self._pending:
            await self._pending.popleft()

    async def close(self) -> None:
        for f in self._pending:
            f.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        # A batch the thread is writing finishes first: the part's file (and its descriptor,
        # whose number could be reused) is closed only after it (a cancelled backup).
        await asyncio.shield(asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True))


async def cluster_facts(store: Store) -> tuple[Status, list[Member], int]:
    status = await store.status()
    members = await store.members()
    _, revision = await store.get_prefix("/etcdward/backup-revision-probe/")
    return status, members, revision


def make_manifest(status: Status, members: list[Member], revision: int, digest: SnapshotDigest,
                  now: dt.datetime) -> Manifest:
    me = next((m for m in members if m.id == status.member_id), None)
    return Manifest(
        cluster_id=format(status.cluster_id, "x"), member_name=me.name if me else "",
        member_id=format(status.member_id, "x"), revision=revision, etcd_version=status.version,
        members=tuple({"name": m.name, "id": m.hex_id, "peerURLs": list(m.peer_urls), "isLearner": m.is_learner}
                      for m in members),
        created=now.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        snapshot_size=digest.size, snapshot_sha256=digest.whole.hexdigest())


async def receive_snapshot(store: Store, part: SnapshotPart) -> None:
    """etcd's snapshot stream into part (in the worker thread); ArchiveError if etcd's hash is wrong."""
    worker = ToWorker(part.write_many)
    try:
        await store.snapshot(worker.feed)
        await worker.drain()
    finally:
        await worker.close()
    if not part.digest.etcd_hash_ok:
        raise ArchiveError("the snapshot etcd sent does not match its own integrity hash; try again")


def pki_files(data: DataDir) -> dict[str, bytes]:
    return {name: (data.root / name).read_bytes() for name in PKI_FILES}


async def take_backup(store: Store, data: DataDir, config_yaml: bytes, dest: Path | IO[bytes],
                      now: dt.datetime | None = None) -> Taken:
    """A backup of this member into the directory `dest` (written atomically, 0600, verified
    after writing) or onto the stream `dest`. The snapshot is written into the archive's temp
    file in dest as it streams (or staged in a temp file in the data dir when streaming), never
    held in memory."""
    now = now or dt.datetime.now(dt.timezone.utc)
    pki = pki_files(data)  # before the snapshot: a node without its CAs cannot be backed up
    status, members, revision = await cluster_facts(store)
    if isinstance(dest, Path):
        draft = make_manifest(status, members, revision, SnapshotDigest(), now)
        with archive_part(dest, now, draft, config_yaml, pki) as part:
            await receive_snapshot(store, part)
            manifest = make_manifest(status, members, revision, part.digest, now)
            path = await until_done(asyncio.to_thread(write_verified, dest, now, part, manifest, config_yaml, pki))
            return Taken(path, manifest)
    with temp_file(data.root, ".etcdward-snapshot-") as part_path, SnapshotPart(part_path) as part:
        await receive_snapshot(store, part)
        manifest = make_manifest(status, members, revision, part.digest, now)
        await until_done(asyncio.to_thread(_write_stream, dest, part, manifest, config_yaml, pki))
        return Taken(None, manifest)


async def until_done(work: Awaitable[T]) -> T:
    """A worker thread's result; a cancel waits for the thread to end before it goes on (the
    caller's cleanup must not unlink or close what the thread still writes), then is raised."""
    job = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.gather(job, return_exceptions=True)
        raise


def _write_stream(out: IO[bytes], part: SnapshotPart, manifest: Manifest, config_yaml: bytes,
                  pki: dict[str, bytes]) -> None:
    write_archive(out, part, manifest, config_yaml, pki)
    out.flush()


@contextmanager
def archive_part(dest: Path, now: dt.datetime, draft: Manifest, config_yaml: bytes,
                 pki: dict[str, bytes]) -> Iterator[SnapshotPart]:
    """The snapshot member of the archive to be, written in place in its temp file in the
    directory dest (0600), after room for member 1 (writer.member1_room; draft: the manifest but
    for the snapshot's digest and revision). Finish it with write_verified."""
    with temp_file(dest, f".{archive_name(now)}.") as tmp, \
            SnapshotPart(tmp, offset=member1_room(draft, config_yaml, pki)) as part:
        yield part


def write_verified(dest: Path, now: dt.datetime, part: SnapshotPart, manifest: Manifest, config_yaml: bytes,
                   pki: dict[str, bytes]) -> Path:
    """The archive of archive_part: member 1 written into its room, then fsynced while it is
    read back and checked (writer.check_written), then given its name (never over an archive
    of that name: ArchiveExists) and the directory synced. Its path.
    (Blocking: the controller runs it in a worker thread.)"""
    final = dest / archive_name(now)
    head = head_tar(manifest, config_yaml, pki)
    part.finish(len(head))
    member1 = padded_member1(head, part.offset)
    with part.path.open("r+b") as fh, ThreadPoolExecutor(1, thread_name_prefix="backup-fsync") as pool:
        fh.write(member1)
        fh.flush()
        # the check reads what the file holds now (the page cache, synced or not) and takes CPU,
        # fsync waits for the disk: side by side, both done before the archive gets its name
        synced = pool.submit(os.fsync, fh.fileno())
        try:
            check_written(part.path, member1, part)
        finally:
            synced.result()
    rename_no_replace(part.path, final)
    return final


def rename_no_replace(tmp: Path, final: Path) -> None:
    """tmp renamed to final, the directory synced; ArchiveExists if final exists (two backups of
    one second into one directory get one name: rename(2) would silently replace the first).
    link(2) refuses an existing name atomically; tmp goes after it (the caller's temp_file
    removes it when refused). Works through /proc/self/fd/N directories (handoff_server.py)."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise ArchiveExists(final) from None
    except OSError as e:
        if e.errno not in NO_HARD_LINKS:
            raise
        # No hard links here: look, then rename. A backup that takes the name between the two
        # (microseconds, and only one of the same second) is still replaced.
        if os.path.lexists(final):
            raise ArchiveExists(final) from None
        os.replace(tmp, final)
        sync_dir(final.parent)
        return
    sync_dir(final.parent)  # the new name is durable before the old one goes
    os.unlink(tmp)
    sync_dir(final.parent)


def sync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
