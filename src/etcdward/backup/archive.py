"""The backup archive: format, writing, and reading with every check before anything is used.

    etcdward_backup_<UTC YYYY-MM-DDTHH_MM_SSZ>.tar.gz, members in this order, each 0600:
      backup.json        the manifest (Manifest): format version, cluster, source member,
                         revision, etcd version, member list, creation time, snapshot size+sha256
      config.yaml        the effective config of the node it was taken on
      pki/ca.crt, pki/ca.key, pki/etcd/ca.crt, pki/etcd/ca.key      the CAs and their keys
      etcd-snapshot.db   etcd's snapshot stream as sent: the bbolt db followed by etcd's own
                         32-byte sha256 of it (what `etcdctl snapshot restore` checks)

The manifest comes first so that a reader of a stream (`restore -`) knows the expected digest
before the snapshot arrives, and the snapshot is hashed while it streams: no member is ever
held in memory whole, except the small ones (bounded). How an archive is written (two gzip
members, uncompressed, in one pass while etcd streams): writer.py.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import Permanent, Temporary

FORMAT_VERSION = 1
MANIFEST = "backup.json"
CONFIG = "config.yaml"
SNAPSHOT = "etcd-snapshot.db"
PKI_FILES = ("pki/ca.crt", "pki/ca.key", "pki/etcd/ca.crt", "pki/etcd/ca.key")
SMALL_MAX = 1 << 20  # manifest, config and PEM files are far smaller
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
HASH_SIZE = 32  # etcd appends sha256(db) to the snapshot stream


class ArchiveError(Permanent):
    """An archive that cannot be used; the message says what is wrong with it."""


class ArchiveExists(Temporary):
    """A backup's name (whole seconds) is taken already in its directory, by a backup of the same
    second: the new one is refused, never put in its place; taken a second later it gets a name
    of its own."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists already (a backup of the same second); not replaced: run it again")


def archive_name(now: dt.datetime) -> str:
    return f"etcdward_backup_{now.astimezone(dt.timezone.utc).strftime('%Y-%m-%dT%H_%M_%SZ')}.tar.gz"


@dataclass(frozen=True)
class Manifest:
    cluster_id: str
    member_name: str
    member_id: str
    revision: int
    etcd_version: str
    members: tuple[dict[str, Any], ...]
    created: str  # UTC, ISO 8601
    snapshot_size: int
    snapshot_sha256: str
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        body = {"formatVersion": self.format_version, "clusterID": self.cluster_id,
                "member": {"name": self.member_name, "id": self.member_id}, "revision": self.revision,
                "etcdVersion": self.etcd_version, "members": list(self.members), "created": self.created,
                "snapshot": {"file": SNAPSHOT, "size": self.snapshot_size, "sha256": self.snapshot_sha256}}
        return (json.dumps(body, indent=2) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        try:
            d = json.loads(raw)
            version = d["formatVersion"]
            if version != FORMAT_VERSION:
                raise ArchiveError(f"{MANIFEST}: format version {version!r} is not one this etcdward reads "
                                   f"({FORMAT_VERSION})")
            snap, member = d["snapshot"], d["member"]
            m = cls(cluster_id=str(d["clusterID"]), member_name=str(member["name"]), member_id=str(member["id"]),
                    revision=int(d["revision"]), etcd_version=str(d["etcdVersion"]),
                    members=tuple(dict(x) for x in d["members"]), created=str(d["created"]),
                    snapshot_size=int(snap["size"]), snapshot_sha256=str(snap["sha256"]))
        except ArchiveError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ArchiveError(f"{MANIFEST} is not a valid manifest ({type(e).__name__}: {e})") from None
        if len(m.snapshot_sha256) != 64 or m.snapshot_size < HASH_SIZE:
            raise ArchiveError(f"{MANIFEST}: snapshot size or sha256 is not valid")
        return m

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SnapshotDigest:
    """sha256 of the whole snapshot file and etcd's own check (sha256 of all but the last 32
    bytes == the last 32 bytes), with ONE sha256 pass: sha256 consumes its input in order, so the
    hash of the whole file is the hash of the body continued with the tail (hashlib's copy()).
    Hashing is most of a backup's CPU time, which the etcd server competes for."""

    def __init__(self) -> None:
        self.body = hashlib.sha256()
        self.tail = b""
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(chunk) < HASH_SIZE:
            buf = self.tail + chunk
            self.body.update(buf[:-HASH_SIZE])
            self.tail = buf[-HASH_SIZE:]
            return
        view = memoryview(chunk)  # no copy of a large chunk
        self.body.update(self.tail)
        self.body.update(view[:-HASH_SIZE])
        self.tail = bytes(view[-HASH_SIZE:])

    @property
    def whole(self) -> hashlib._Hash:
        h = self.body.copy()
        h.update(self.tail)
        return h

    @property
    def etcd_hash_ok(self) -> bool:
        return self.size > HASH_SIZE and self.body.digest() == self.tail

    @classmethod
    def of_file(cls, path: Path) -> SnapshotDigest:
        d = cls()
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                d.update(chunk)
        return d


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, 0o600, 0, 0, "root", "root"
    ti.mtime = int(dt.datetime.now(dt.timezone.utc).timestamp())
    return ti


@dataclass(frozen=True)
class Unpacked:
    manifest: Manifest
    snapshot: Path | None  # where the snapshot was written (None when only verifying)
    config_yaml: bytes
    pki: dict[str, bytes]


def read_archive(src: IO[bytes], staging: Path | None, what: str = "archive") -> Unpacked:
    """Read and check a whole archive from a stream. With `staging`, the snapshot is written to
    staging/etcd-snapshot.db (0600); without, it is only hashed. ArchiveError names what is
    wrong: not a tar.gz, truncated, a missing or unexpected member, a digest mismatch."""
    try:
        return _read(src, staging)
    except (tarfile.ReadError, gzip.BadGzipFile, zlib.error, EOFError) as e:
        if "truncated" in str(e).lower() or isinstance(e, EOFError) or "unexpected end" in str(e).lower():
            raise ArchiveError(f"{what} is truncated ({e})") from None
        if "check failed" in str(e).lower():  # gzip's CRC-32 or length of a member
            raise ArchiveError(f"{what} is damaged ({e})") from None
        raise ArchiveError(f"{what} is not a gzip-compressed tar archive ({e})") from None
    except tarfile.TarError as e:
        raise ArchiveError(f"{what} is not a valid archive ({e})") from None


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (ti := tar.next()) is not None:
        yield ti


def _read(src: IO[bytes], staging: Path | None) -> Unpacked:
    manifest: Manifest | None = None
    small: dict[str, bytes] = {}
    digest: SnapshotDigest | None = None
    snap_path = staging / SNAPSHOT if staging is not None else None
    # gzip.GzipFile, not tarfile's own "r|gz": an archive is two gzip members (writer.py) and
    # tarfile's stream reader stops at the end of the first
    with gzip.GzipFile(fileobj=src, mode="rb") as gz, \
            tarfile.open(fileobj=gz, mode="r|", bufsize=CHUNK) as tar:  # 1 MiB reads: ~1/3 faster than 10 KiB
        for ti in _members(tar):
            if ti.name not in (MANIFEST, CONFIG, SNAPSHOT, *PKI_FILES):
                raise ArchiveError(f"unexpected member {ti.name!r} (not an etcdward backup?)")
            if not ti.isfile():
                raise ArchiveError(f"member {ti.name!r} is not a regular file")
            if ti.name in small or (ti.name == SNAPSHOT and digest is not None):
                raise ArchiveError(f"member {ti.name!r} appears twice")
            fh = tar.extractfile(ti)
            assert fh is not None
            if ti.name != SNAPSHOT:
                if ti.size > SMALL_MAX:
                    raise ArchiveError(f"member {ti.name!r} is {ti.size} bytes, larger than any it can be")
                small[ti.name] = fh.read()
                if ti.name == MANIFEST:
                    manifest = Manifest.parse(small[ti.name])
                continue
            if manifest is None:
                raise ArchiveError(f"{SNAPSHOT} comes before {MANIFEST} (not an etcdward backup?)")
            digest = _copy_snapshot(fh, snap_path)
    if manifest is None:
        raise ArchiveError(f"no {MANIFEST} in the archive (not an etcdward backup?)")
    missing = [n for n in (CONFIG, *PKI_FILES) if n not in small] + ([SNAPSHOT] if digest is None else [])
    if missing:
        raise ArchiveError(f"missing member(s): {', '.join(missing)}")
    assert digest is not None
    if digest.size != manifest.snapshot_size or digest.whole.hexdigest() != manifest.snapshot_sha256:
        raise ArchiveError(f"{SNAPSHOT}: size/sha256 ({digest.size}, {digest.whole.hexdigest()[:12]}…) do not match "
                           f"the manifest ({manifest.snapshot_size}, {manifest.snapshot_sha256[:12]}…)")
    if not digest.etcd_hash_ok:
        raise ArchiveError(f"{SNAPSHOT}: etcd's own integrity hash does not match (the snapshot is damaged)")
    return Unpacked(manifest, snap_path, small[CONFIG], {n: small[n] for n in PKI_FILES})


def _copy_snapshot(fh: IO[bytes], dest: Path | None) -> SnapshotDigest:
    digest = SnapshotDigest()
    out = None
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = open(dest, "wb", opener=lambda p, f: __import__("os").open(p, f, 0o600))
    try:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
    finally:
        if out is not None:
            out.close()
    return digest


def verify_file(path: Path) -> Manifest:
    """Read the archive at path end to end without writing anything; its manifest if it verifies."""
    try:
        with path.open("rb") as fh:
            return read_archive(fh, None, what=str(path)).manifest
    except OSError as e:
        raise ArchiveError(f"cannot read {path}: {e.strerror}") from None
