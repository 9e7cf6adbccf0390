"""Writing an archive in one pass over the snapshot, while it streams from etcd.

A tar header carries its member's size, and the manifest (the first member) carries the
snapshot's sha256: neither is known before the whole snapshot has arrived. So the archive is
written as two gzip members, which every gzip reader reads as one stream (RFC 1952 2.2: a gzip
file is a series of members; gzip -d, tar xzf and Python's gzip all concatenate them):

    member 1   backup.json, config.yaml, pki/*, then the tar header of etcd-snapshot.db
    member 2   etcd-snapshot.db's bytes, the tar padding and the end-of-archive blocks

A backup into a directory writes member 2 straight into the archive's temp file, after room
left for member 1 (member1_room: as long as member 1 can become); member 1 is written into that
room once the stream has ended, padded to fill it exactly by its gzip header's extra field. A
backup onto a stream (`--save-path -`, nothing can be seeked) stages member 2 in a part file and
copies it out after member 1. The snapshot's digests (sha256, etcd's own hash) and the member's
CRC-32 are computed on exactly the bytes written.

Both members are gzip "stored" blocks (deflate without compression, built here: see
SnapshotPart): still a valid .tar.gz, about the snapshot's size, like `etcdctl snapshot save`'s
output. Measured on the 2-core CI machine, 110 MB of etcd data: zlib level 1 runs at 24 MB/s
(4.5 s: 4x the whole `etcdctl snapshot save`), python-isal level 1 at 141 MB/s (0.8 s, and a new
native dependency), zlib level 0 costs 0.13 s of CPU copying. The backup must not take much
longer than etcdctl's (issue 10: <= 1.2x), so the archive is not compressed.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import os
import shutil
import stat
import struct
import tarfile
import zlib
from pathlib import Path
from typing import IO

from .archive import BLOCK, CHUNK, CONFIG, MANIFEST, SNAPSHOT, ArchiveError, Manifest, SnapshotDigest, tar_info

RECORD = 20 * BLOCK  # tar's record size: archives are padded to a whole record, as tar(1) does
STORED_MAX = 0xFFFF  # bytes in one stored deflate block at most
# a gzip member's header (RFC 1952 2.3): magic, deflate, no flags, no mtime, no extra flags, Unix
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
FEXTRA = 0x04  # gzip header flag: an extra field follows
PAD_ID = b"ew"  # the extra subfield padding member 1 to its room (etcdward)
WIDEST = (1 << 63) - 1  # etcd's revisions and sizes are int64
IOV_MAX = 1024  # POSIX's minimum is 16, Linux's and the BSDs' 1024


def head_tar(manifest: Manifest, config_yaml: bytes, pki: dict[str, bytes]) -> bytes:
    """The tar bytes of every member but the snapshot's data: the small members, then the
    snapshot's header (a multiple of 512 bytes)."""
    raw = bytearray()
    for name, body in ((MANIFEST, manifest.to_json()), (CONFIG, config_yaml), *sorted(pki.items())):
        raw += tar_info(name, len(body)).tobuf(tarfile.PAX_FORMAT)
        raw += body + bytes(-len(body) % BLOCK)
    raw += tar_info(SNAPSHOT, manifest.snapshot_size).tobuf(tarfile.PAX_FORMAT)
    return bytes(raw)


class SnapshotPart:
    """Member 2, written to `path` as the snapshot streams in (one thread at a time).

    The deflate stream is built here rather than by zlib at level 0, which copies every byte
    into its window and out again (0.13 s of CPU per 110 MB here, on the core the etcd server
    needs to send the snapshot): each chunk becomes one "stored" block (RFC 1951 3.2.4: a 5-byte
    header, then the bytes as they are) and the chunks go to the file with one writev per batch,
    never copied or joined in Python. The gzip trailer's CRC-32 is taken as they pass."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset  # where the member starts: after the room left for member 1 (member1_room)
        self.digest = SnapshotDigest()
        self._fh = path.open("wb", buffering=0)
        self._fh.seek(offset)
        self._crc = 0
        self._length = 0  # uncompressed bytes, for the trailer
        _write_all(self._fh.fileno(), [GZIP_HEADER])

    def write(self, chunk: bytes) -> None:
        self.write_many([chunk])

    def write_many(self, chunks: list[bytes]) -> None:
        """Chunks in order: hashed, then appended as stored blocks."""
        out: list[bytes | memoryview] = []
        for chunk in chunks:
            self.digest.update(chunk)
            out += self._blocks(chunk, final=False)
        _write_all(self._fh.fileno(), out)

    def _blocks(self, data: bytes, final: bool) -> list[bytes | memoryview]:
        self._crc = zlib.crc32(data, self._crc)
        self._length += len(data)
        return stored_blocks(data, final)

    @property
    def trailer(self) -> bytes:
        """The gzip trailer (CRC-32 and length of what the member holds), once finished."""
        return struct.pack("<II", self._crc, self._length & 0xFFFFFFFF)

    def finish(self, head_size: int) -> None:
        """Pad the snapshot to a tar block, add the two end-of-archive blocks and pad the whole
        archive (head_size bytes of tar before the snapshot) to a record, in the final stored
        block (never empty: the end-of-archive blocks are in it); close the member."""
        size = self.digest.size
        end = head_size + size + -size % BLOCK + 2 * BLOCK
        tail = self._blocks(bytes(end - head_size - size + -end % RECORD), final=True)
        _write_all(self._fh.fileno(), [*tail, self.trailer])
        self._fh.close()

    def close(self) -> None:
        """Idempotent; on the way out whether or not the part was finished."""
        self._fh.close()

    def __enter__(self) -> SnapshotPart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stored_blocks(data: bytes, final: bool) -> list[bytes | memoryview]:
    """data as deflate stored blocks (RFC 1951 3.2.4), the last one marked final if `final`."""
    view, out = memoryview(data), []
    for i in range(0, len(view), STORED_MAX):
        piece = view[i:i + STORED_MAX]
        last = final and i + STORED_MAX >= len(view)
        out += (struct.pack("<BHH", last, len(piece), len(piece) ^ 0xFFFF), piece)
    return out


def _widest(manifest: Manifest) -> Manifest:
    """manifest with the fields known only once the snapshot is in at their longest."""
    return dataclasses.replace(manifest, revision=WIDEST, snapshot_size=WIDEST, snapshot_sha256="f" * 64)


def _member1_size(head_size: int, pad: int) -> int:
    blocks = max(1, -(-head_size // STORED_MAX))
    return len(GZIP_HEADER) + 2 + 4 + pad + head_size + 5 * blocks + 8  # header, XLEN, subfield, body, trailer


def member1_room(draft: Manifest, config_yaml: bytes, pki: dict[str, bytes]) -> int:
    """Bytes to leave for member 1 at the front of an archive written in place: member 1 as
    long as it can become, whatever the snapshot's size, digest and revision turn out to be
    (draft holds the rest of the manifest)."""
    return _member1_size(len(head_tar(_widest(draft), config_yaml, pki)), 0)


def padded_member1(head: bytes, room: int) -> bytes:
    """Member 1 (head, in stored blocks) as exactly `room` bytes: the gzip header's extra field
    (RFC 1952 2.3.1.1, which every reader skips) takes up what the head does not. So the
    snapshot can be written straight into the archive after the room, not copied there."""
    pad = room - _member1_size(len(head), 0)
    if not 0 <= pad <= 0xFFFF - 4:
        raise ArchiveError(f"the archive's first member ({len(head)} bytes of tar) does not fit its room ({room})")
    extra = PAD_ID + struct.pack("<H", pad) + bytes(pad)
    header = GZIP_HEADER[:3] + bytes([FEXTRA]) + GZIP_HEADER[4:] + struct.pack("<H", len(extra)) + extra
    trailer = struct.pack("<II", zlib.crc32(head), len(head))
    return b"".join([header, *stored_blocks(head, final=True), trailer])


def _write_all(fd: int, buffers: list[bytes | memoryview]) -> None:
    """os.writev until every buffer is written (it may write less, and takes IOV_MAX at most)."""
    i = 0
    while i < len(buffers):
        n = os.writev(fd, buffers[i:i + IOV_MAX])
        while i < len(buffers) and n >= len(buffers[i]):
            n -= len(buffers[i])
            i += 1
        if n:
            buffers[i] = memoryview(buffers[i])[n:]


def write_archive(out: IO[bytes], part: SnapshotPart, manifest: Manifest, config_yaml: bytes,
                  pki: dict[str, bytes]) -> bytes:
    """Member 1 then the finished member 2 onto `out` (a file or a pipe: nothing is seeked).
    Returns member 1 (for check_written)."""
    head = head_tar(manifest, config_yaml, pki)
    part.finish(len(head))
    member1 = gzip.compress(head, compresslevel=6, mtime=0)
    out.write(member1)
    out.flush()
    with part.path.open("rb") as src:
        if not _copy_in_kernel(src, out):
            shutil.copyfileobj(src, out, 1 << 20)
    return member1


def check_written(path: Path, member1: bytes, part: SnapshotPart) -> None:
    """The archive at path, read back after it was synced, is member 1 followed by the snapshot
    member holding exactly the bytes that were hashed (sha256 and etcd's hash, on the bytes as
    they were written): its stored blocks are walked and their CRC-32 and length must be the
    ones taken as the bytes were written, and its trailer must say so; nothing may follow.
    One read of the file and a CRC-32 (2.8 GB/s here), not a second sha256 or decompress pass:
    that took 2.4 s for 110 MB, twice `etcdctl snapshot save` (bench/backup.py); `backup list`,
    retention and `restore` still do it (archive.verify_file / read_archive)."""
    crc, length = 0, 0
    with path.open("rb", buffering=0) as fh:
        got = _Reader(fh)
        same = all(got.take(len(piece)) == piece for piece in _pieces(member1)) \
            and got.take(len(GZIP_HEADER)) == GZIP_HEADER
        while same and (header := got.take(5)) is not None:
            flags, size, check = struct.unpack("<BHH", header)
            data = got.take(size)
            same = flags in (0, 1) and size ^ check == 0xFFFF and data is not None
            if same:
                crc, length = zlib.crc32(data, crc), length + size
            if flags == 1:
                break
        else:
            same = False  # no final block
        same = same and got.take(8) == part.trailer and got.take(1) is None
    if not same or (crc, length & 0xFFFFFFFF) != struct.unpack("<II", part.trailer):
        raise ArchiveError(f"{path}: the archive read back differs from what was written")


def _pieces(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    return [view[i:i + STORED_MAX] for i in range(0, len(view), STORED_MAX)]


class _Reader:
    """Exactly n bytes at a time from a file, read 1 MiB at a time into one buffer (a block of
    member 2 never needs more than 64 KiB of it): no copy per block, memory bounded."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._view = memoryview(bytearray(CHUNK + STORED_MAX + 8))
        self._start = self._end = 0

    def take(self, n: int) -> memoryview | None:
        """The next n bytes (valid until the next call), or None at the end of the file first."""
        if self._end - self._start < n:
            left = bytes(self._view[self._start:self._end])
            self._view[:len(left)] = left
            self._start, self._end = 0, len(left)
            while self._end < n:
                got = self._fh.readinto(self._view[self._end:])  # type: ignore[attr-defined]
                if not got:
                    return None
                self._end += got
        self._start += n
        return self._view[self._start - n:self._start]


def _copy_in_kernel(src: IO[bytes], out: IO[bytes]) -> bool:
    """os.copy_file_range between two regular files; False where it cannot (a pipe, another OS)."""
    if not hasattr(os, "copy_file_range"):
        return False
    try:
        out_fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not stat.S_ISREG(os.fstat(out_fd).st_mode):
        return False
    in_fd, left = src.fileno(), os.fstat(src.fileno()).st_size
    try:
        while left > 0:
            n = os.copy_file_range(in_fd, out_fd, left)
            if n == 0:
                raise OSError(f"copy_file_range: {src.name}: unexpected end of file")
            left -= n
    except OSError as e:
        if left == os.fstat(in_fd).st_size and e.errno in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return False  # nothing copied yet: the portable way instead
        raise
    return True
