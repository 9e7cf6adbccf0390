"""Taking a backup from this node's etcd: snapshot -> temp file (0600, hashed) -> archive ->
verified. Used by `etcdward backup` and by the controller's scheduled backups.

Hashing, compressing and verifying run in a worker thread (zlib and hashlib release the GIL):
inside the controller they must never hold up its event loop (join API, reconciler, leases)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..paths import DataDir
from ..store import Store
from .archive import PKI_FILES, ArchiveError, Manifest, SnapshotDigest, archive_name, verify_file, write_archive


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


async def snapshot_manifest(store: Store, snap: Path, now: dt.datetime) -> Manifest:
    """Stream etcd's snapshot into snap and describe it; ArchiveError if etcd's hash is wrong."""
    status = await store.status()
    members = await store.members()
    _, revision = await store.get_prefix("/etcdward/backup-revision-probe/")
    digest = SnapshotDigest()  # hashed as it streams: no second pass over the file
    await store.snapshot(snap, digest.update)
    if not digest.etcd_hash_ok:
        raise ArchiveError("the snapshot etcd sent does not match its own integrity hash; try again")
    me = next((m for m in members if m.id == status.member_id), None)
    return Manifest(
        cluster_id=format(status.cluster_id, "x"), member_name=me.name if me else "",
        member_id=format(status.member_id, "x"), revision=revision, etcd_version=status.version,
        members=tuple({"name": m.name, "id": m.hex_id, "peerURLs": list(m.peer_urls), "isLearner": m.is_learner}
                      for m in members),
        created=now.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        snapshot_size=digest.size, snapshot_sha256=digest.whole.hexdigest())


def pki_files(data: DataDir) -> dict[str, bytes]:
    return {name: (data.root / name).read_bytes() for name in PKI_FILES}


async def take_backup(store: Store, data: DataDir, config_yaml: bytes, dest: Path | IO[bytes],
                      now: dt.datetime | None = None) -> Taken:
    """A backup of this member into the directory `dest` (written atomically, 0600, verified
    after writing) or onto the stream `dest`. The snapshot is staged in a temp file next to the
    archive (or in the data dir when streaming), never in memory."""
    now = now or dt.datetime.now(dt.timezone.utc)
    pki = pki_files(data)  # before the snapshot: a node without its CAs cannot be backed up
    staging = dest if isinstance(dest, Path) else data.root
    with temp_file(staging, ".etcdward-snapshot-") as snap:
        manifest = await snapshot_manifest(store, snap, now)
        if not isinstance(dest, Path):
            await asyncio.to_thread(_write_stream, dest, manifest, snap, config_yaml, pki)
            return Taken(None, manifest)
        return Taken(await asyncio.to_thread(write_verified, dest, now, manifest, snap, config_yaml, pki), manifest)


def _write_stream(out: IO[bytes], manifest: Manifest, snap: Path, config_yaml: bytes, pki: dict[str, bytes]) -> None:
    write_archive(out, manifest, snap, config_yaml, pki)
    out.flush()


def write_verified(dest: Path, now: dt.datetime, manifest: Manifest, snap: Path, config_yaml: bytes,
                   pki: dict[str, bytes]) -> Path:
    """The archive of snap in the directory dest: written to a temp file (0600), read back and
    verified, then renamed into place and the directory synced. Its path. (Blocking: the
    controller runs it in a worker thread.)"""
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / archive_name(now)
    with temp_file(dest, f".{final.name}.") as tmp:
        with tmp.open("wb") as fh:
            write_archive(fh, manifest, snap, config_yaml, pki)
            fh.flush()
            os.fsync(fh.fileno())
        if verify_file(tmp) != manifest:
            raise ArchiveError(f"{final}: the archive read back does not match what was written")
        os.replace(tmp, final)
    dir_fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final
