"""Backups (issue 10): one archive from a running node, read back with every check, and every
kind of damaged archive refused with a message that names what is wrong."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import dataclasses
import datetime as dt
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from etcdward.backup.archive import (MANIFEST, PKI_FILES, SNAPSHOT, ArchiveError, ArchiveExists, Manifest, archive_name,
                                     read_archive, verify_file)
from etcdward.backup.handoff import failure_line
from etcdward.backup.take import archive_part, write_verified
from etcdward.backup.writer import SnapshotPart, check_written, write_archive
from tests.cluster import Cluster, Node
from tests.prereqs import needs
from tests.test_backup_schedule import read_only_dir  # noqa: F401 - a fixture
from tests.test_bad_input import etcdward


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("backup")
    cluster = Cluster(root)
    try:
        n1 = cluster.bootstrap("n1")
        for i in range(50):
            assert n1.etcdctl("put", f"/data/{i}", f"value-{i}").returncode == 0
        p = etcdward("backup", "--save-path", str(root / "out"), "--data-dir", str(n1.data.root))
        assert p.returncode == 0, p.stderr
        yield n1, Path(p.stdout.strip())
    finally:
        cluster.teardown()


def test_backup_writes_a_verified_0600_archive(backed_up: tuple[Node, Path]) -> None:
    n1, path = backed_up
    assert path.name.startswith("etcdward_backup_") and path.name.endswith("Z.tar.gz")
    assert path.stat().st_mode & 0o777 == 0o600
    m = verify_file(path)
    st = n1.status()
    assert m.cluster_id == format(st.cluster_id, "x") and m.member_name == "n1" and m.revision >= 51
    assert [x["name"] for x in m.members] == ["n1"]
    names = [ti.name for ti in tarfile.open(path)]
    assert names[0] == MANIFEST and names[-1] == SNAPSHOT
    assert {"config.yaml", "pki/ca.key", "pki/etcd/ca.key"} <= set(names)
    listing = json.loads(etcdward("backup", "list", "--dir", str(path.parent), "-o", "json").stdout)
    assert [(r["name"], r["verified"], r["revision"]) for r in listing] == [(path.name, True, m.revision)]


def test_the_two_member_archive_is_an_ordinary_tar_gz(backed_up: tuple[Node, Path], tmp_path: Path) -> None:
    """gzip and GNU tar read the archive (two gzip members, level 0) as one; a byte changed on
    disk after writing is what the check after writing catches."""
    _, path = backed_up
    assert subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0
    assert subprocess.run(["tar", "-xzf", str(path), "-C", str(tmp_path)], capture_output=True).returncode == 0
    m = verify_file(path)
    snap = (tmp_path / SNAPSHOT).read_bytes()
    assert len(snap) == m.snapshot_size and hashlib.sha256(snap).hexdigest() == m.snapshot_sha256
    assert len(gzip.decompress(path.read_bytes())) % (20 * 512) == 0  # whole tar records, as tar(1) writes

    with SnapshotPart(tmp_path / "part") as part:
        for i in range(0, len(snap), 32768):
            part.write(snap[i:i + 32768])
        out = tmp_path / "again.tar.gz"
        with out.open("wb") as fh:
            member1 = write_archive(fh, part, m, b"a: 1\n", {n: n.encode() for n in PKI_FILES})
        check_written(out, member1, part)
        raw = bytearray(out.read_bytes())
        raw[len(raw) // 2] ^= 1
        out.write_bytes(bytes(raw))
        with pytest.raises(ArchiveError, match="differs from what was written"):
            check_written(out, member1, part)


def test_an_archive_written_in_place_pads_its_first_member_and_is_checked(tmp_path: Path) -> None:
    """The snapshot goes straight into the archive after room for member 1, sized for the widest
    manifest (here: 7 members, a 20-digit revision would not fit less); member 1 fills its room
    exactly (gzip extra field) whatever the snapshot's size, and the check after writing catches
    a byte changed in the snapshot member. No etcd needed: the bytes are made up."""
    body = os.urandom(200_000)
    snapshot = body + hashlib.sha256(body).digest()
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    members = tuple({"name": f"node-{i}", "id": f"{i:016x}", "peerURLs": [f"https://10.0.0.{i}:2380"],
                     "isLearner": False} for i in range(7))
    draft = Manifest("c0ffee", "node-0", "0" * 16, 0, "3.5.30", members, "2026-01-02T03:04:05Z", 0, "")
    pki = {n: n.encode() * 100 for n in PKI_FILES}
    with archive_part(tmp_path, now, draft, b"a: 1\n", pki) as part:
        for i in range(0, len(snapshot), 32768):
            part.write_many([snapshot[i:i + 10000], snapshot[i + 10000:i + 32768]])
        manifest = dataclasses.replace(draft, revision=(1 << 62), snapshot_size=part.digest.size,
                                       snapshot_sha256=part.digest.whole.hexdigest())
        path = write_verified(tmp_path, now, part, manifest, b"a: 1\n", pki)
        assert subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0
        unpacked = read_archive(path.open("rb"), tmp_path / "x")
        assert unpacked.manifest == manifest and (tmp_path / "x" / SNAPSHOT).read_bytes() == snapshot
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
        assert path.stat().st_mode & 0o777 == 0o600
        raw = bytearray(path.read_bytes())
        raw[part.offset + 100_000] ^= 1
        path.write_bytes(bytes(raw))
        with pytest.raises(ArchiveError, match="differs from what was written"):
            check_written(path, raw[:part.offset], part)


def made_up_archive(dest: Path, now: dt.datetime, body: bytes) -> Path:
    """An archive of made-up bytes, written as take_backup writes one into dest (no etcd)."""
    snapshot = body + hashlib.sha256(body).digest()
    draft = Manifest("c0ffee", "node-0", "0" * 16, 0, "3.5.30", (), "2026-01-02T03:04:05Z", 0, "")
    pki = {n: n.encode() for n in PKI_FILES}
    with archive_part(dest, now, draft, b"a: 1\n", pki) as part:
        part.write_many([snapshot])
        manifest = dataclasses.replace(draft, revision=1, snapshot_size=part.digest.size,
                                       snapshot_sha256=part.digest.whole.hexdigest())
        return write_verified(dest, now, part, manifest, b"a: 1\n", pki)


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_second_backup_of_the_same_second_is_refused_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     hard_links: bool) -> None:
    """Archive names have whole seconds: the second backup of one second into one directory is
    refused (link(2) will not take an existing name), the first kept as it was, the second's
    temp file removed. Written through /proc/self/fd/N, as the controller writes the CLI's
    backups (handoff_server.py). Where link(2) is refused (vfat: EPERM), a look before the
    rename refuses it."""
    if not hard_links:
        def no_links(*_: object, **__: object) -> None:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        monkeypatch.setattr(os, "link", no_links)
    now = dt.datetime(2026, 1, 2, 3, 4, 5, 100_000, tzinfo=dt.timezone.utc)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = made_up_archive(Path(f"/proc/self/fd/{fd}"), now, b"first" * 1000)
        kept = (tmp_path / first.name).read_bytes()
        with pytest.raises(ArchiveExists) as refused:
            made_up_archive(Path(f"/proc/self/fd/{fd}"), now.replace(microsecond=999_999), b"second" * 1000)
    finally:
        os.close(fd)
    assert failure_line(refused.value, tmp_path, str(tmp_path)) == (
        f"backup failed: {first} exists already (a backup of the same second); not replaced: run it again")
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp file left
    assert (tmp_path / first.name).read_bytes() == kept and verify_file(tmp_path / first.name).revision == 1


def test_a_cli_backup_whose_name_is_taken_fails_in_one_line_and_replaces_nothing(backed_up: tuple[Node, Path],
                                                                                 tmp_path: Path) -> None:
    """Taken by the controller (through the directory handed over) and by the CLI itself: every
    name of the next two minutes is taken already, so the backup's own second is one of them."""
    n1, _ = backed_up
    start = dt.datetime.now(dt.timezone.utc)
    for s in range(-2, 120):
        (tmp_path / archive_name(start + dt.timedelta(seconds=s))).write_bytes(b"archive %d" % s)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    refused = re.escape(f"backup failed: {tmp_path}/etcdward_backup_") + r"[0-9T_-]+Z\.tar\.gz" + re.escape(
        " exists already (a backup of the same second); not replaced: run it again\n")
    for switch in ({}, {"ETCDWARD_BACKUP_IN_PROCESS": "1"}):
        p = subprocess.run([sys.executable, "-m", "etcdward", "backup", "--save-path", str(tmp_path),
                            "--data-dir", str(n1.data.root)], capture_output=True, text=True, timeout=60,
                           env={**os.environ, **switch})
        assert p.returncode == 1 and re.fullmatch(refused, p.stderr), (switch, p.stderr)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, switch


def test_snapshot_restores_with_etcdctl(backed_up: tuple[Node, Path], tmp_path: Path) -> None:
    """The snapshot in the archive is what etcd's own tools restore (hash check included)."""
    _, path = backed_up
    read_archive(path.open("rb"), tmp_path)
    out = subprocess.run(["etcdctl", "snapshot", "status", str(tmp_path / SNAPSHOT), "-w", "json"],
                         capture_output=True, text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["revision"] >= 51


def test_backup_streams_to_stdout(backed_up: tuple[Node, Path], tmp_path: Path) -> None:
    n1, _ = backed_up
    with (tmp_path / "s.tar.gz").open("wb") as fh:
        p = subprocess.run([*etcdward_argv(), "backup", "--save-path", "-", "--data-dir", str(n1.data.root)],
                           stdout=fh, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr
    assert verify_file(tmp_path / "s.tar.gz").member_name == "n1"


def etcdward_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "etcdward"]


def rewrite(src: Path, dest: Path, change) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the archive with change(name, bytes) -> bytes | None (None drops the member)."""
    out = io.BytesIO()
    with tarfile.open(src) as tin, tarfile.open(fileobj=out, mode="w:gz") as tout:
        for ti in tin:
            body = tin.extractfile(ti).read()  # type: ignore[union-attr]
            new = change(ti.name, body)
            if new is None:
                continue
            ti.size = len(new)
            tout.addfile(ti, io.BytesIO(new))
    dest.write_bytes(out.getvalue())
    return dest


def flip_last_byte(name: str, body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 1]) if name == SNAPSHOT else body


def wrong_sha(name: str, body: bytes) -> bytes:
    if name != MANIFEST:
        return body
    d = json.loads(body)
    d["snapshot"]["sha256"] = "0" * 64
    return json.dumps(d).encode()


def bad_db_same_sha(src: Path):  # type: ignore[no-untyped-def]
    """Damage the db and make the manifest agree: only etcd's own hash can tell."""
    import hashlib

    snap = tarfile.open(src).extractfile(SNAPSHOT).read()  # type: ignore[union-attr]
    damaged = snap[:100] + bytes([snap[100] ^ 1]) + snap[101:]

    def change(name: str, body: bytes) -> bytes:
        if name == SNAPSHOT:
            return damaged
        if name == MANIFEST:
            d = json.loads(body)
            d["snapshot"]["sha256"] = hashlib.sha256(damaged).hexdigest()
            return json.dumps(d).encode()
        return body
    return change


def newer_etcd(name: str, body: bytes) -> bytes:
    if name != MANIFEST:
        return body
    d = json.loads(body)
    d["etcdVersion"] = "3.99.0"
    return json.dumps(d).encode()


def damage(good: Path, bad: Path, case: str) -> Path:
    """A copy of the good archive at bad, broken as case says (missing:<member> drops one)."""
    if case == "not-gzip":
        bad.write_bytes(b"hello, this is not an archive" * 10)
    elif case == "gzip-not-tar":
        bad.write_bytes(gzip.compress(b"plain text, no tar here" * 100))
    elif case == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    elif case == "foreign-tar":
        with tarfile.open(bad, "w:gz") as t:
            t.add(__file__, arcname="etc/passwd")
    elif case.startswith("missing:"):
        rewrite(good, bad, lambda n, b: None if n == case.split(":", 1)[1] else b)
    else:
        change = {"wrong-sha": wrong_sha, "snapshot-flipped": flip_last_byte, "newer-etcd": newer_etcd}.get(case)
        rewrite(good, bad, change or bad_db_same_sha(good))
    return bad


@pytest.mark.parametrize("case,needle", [
    ("not-gzip", "not a gzip-compressed tar archive"),
    ("gzip-not-tar", "not a gzip-compressed tar archive"),
    ("truncated", "truncated"),
    ("foreign-tar", "unexpected member"),
    ("missing:pki/ca.key", "missing member(s): pki/ca.key"),
    ("wrong-sha", "do not match the manifest"),
    ("snapshot-flipped", "do not match the manifest"),
    ("etcd-hash-broken", "etcd's own integrity hash does not match"),
])
def test_damaged_archives_are_refused_naming_the_problem(backed_up: tuple[Node, Path], tmp_path: Path,
                                                         case: str, needle: str) -> None:
    _, good = backed_up
    bad = damage(good, tmp_path / "bad.tar.gz", case)
    with pytest.raises(ArchiveError) as e:
        read_archive(bad.open("rb"), tmp_path / "staging")
    assert needle in str(e.value), str(e.value)
    listing = json.loads(etcdward("backup", "list", "--dir", str(tmp_path), "-o", "json").stdout)
    assert listing == [] or all(not r["verified"] for r in listing)


def test_the_running_controller_takes_the_backup_into_the_directory_named(backed_up: tuple[Node, Path],
                                                                         tmp_path: Path) -> None:
    """The CLI hands the directory over open (backup/handoff.py): a relative path names the
    directory in the CLI's working directory, and the archive is the CLI's usual one."""
    n1, path = backed_up
    assert f"backup for the CLI: {path.parent}/{path.name}" in n1.log()
    p = subprocess.run([sys.executable, "-m", "etcdward", "backup", "--save-path", "rel/out", "--data-dir",
                        str(n1.data.root)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    made = Path(p.stdout.strip())
    assert made.parent == tmp_path / "rel" / "out" and made.stat().st_mode & 0o777 == 0o600
    assert verify_file(made).member_name == "n1" and f"backup for the CLI: {made}" in n1.log()


def test_with_the_in_process_switch_the_cli_takes_the_backup_itself(backed_up: tuple[Node, Path],
                                                                    tmp_path: Path) -> None:
    n1, _ = backed_up
    p = subprocess.run([sys.executable, "-m", "etcdward", "backup", "--save-path", str(tmp_path / "own"),
                        "--data-dir", str(n1.data.root)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "ETCDWARD_BACKUP_IN_PROCESS": "1"})
    assert p.returncode == 0, p.stderr
    made = Path(p.stdout.strip())
    assert verify_file(made).member_name == "n1" and f"backup for the CLI: {made}" not in n1.log()
    assert not list((n1.data.root / "state").glob("*.sock"))  # the socket is abstract: no file to trip over


def test_only_root_or_the_controllers_user_may_ask_and_answer(tmp_path: Path) -> None:
    """Both ends check the other's user (SO_PEERCRED); here both are this test's user."""
    from etcdward.backup.handoff import peer_user, socket_name, trusted
    import socket as sk

    with sk.socket(sk.AF_UNIX, sk.SOCK_STREAM) as srv, sk.socket(sk.AF_UNIX, sk.SOCK_STREAM) as cli:
        srv.bind(socket_name(tmp_path))
        srv.listen(1)
        cli.connect(socket_name(tmp_path))
        conn, _ = srv.accept()
        with conn:
            assert peer_user(cli) == peer_user(conn) == os.getuid() and trusted(os.getuid())
    assert trusted(0) and not trusted(os.getuid() + 4242)
    assert socket_name(tmp_path) != socket_name(tmp_path.parent) and socket_name(tmp_path).startswith("\0")


@needs("root")  # a read-only mount: root ignores file modes
def test_a_backup_the_controller_cannot_write_fails_in_one_line_naming_the_directory(
        backed_up: tuple[Node, Path], read_only_dir: Path) -> None:
    n1, _ = backed_up
    p = etcdward("backup", "--save-path", str(read_only_dir), "--data-dir", str(n1.data.root))
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"backup failed: Read-only file system: {read_only_dir}/.etcdward_backup_"), p.stderr
    assert "/proc/self/fd" not in p.stderr and list(read_only_dir.iterdir()) == []
    # through click (and the same socket) it reads the same
    slow = subprocess.run([sys.executable, "-m", "etcdward", "backup", "--save-path", str(read_only_dir),
                           "--data-dir", str(n1.data.root)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ETCDWARD_NO_FASTPATH": "1"})
    assert slow.returncode == 1 and slow.stderr.split(".etcdward_backup_")[0] == p.stderr.split(".etcdward_backup_")[0]


def test_a_stuck_controller_is_not_waited_for_and_takes_nothing_later(backed_up: tuple[Node, Path],
                                                                      tmp_path: Path) -> None:
    """A Unix connect succeeds once queued: a controller that does not answer (stopped here) is
    given up after handoff.ACCEPT_WITHIN, the CLI takes the backup itself, and the request the
    controller reads when it runs again finds the CLI gone and takes nothing."""
    n1, _ = backed_up
    out = tmp_path / "out"
    os.kill(n1.proc.pid, signal.SIGSTOP)
    try:
        p = etcdward("backup", "--save-path", str(out), "--data-dir", str(n1.data.root))
    finally:
        os.kill(n1.proc.pid, signal.SIGCONT)
    assert p.returncode == 0, p.stderr
    made = Path(p.stdout.strip())
    assert verify_file(made).member_name == "n1"
    time.sleep(1.5)  # the controller runs again and reads the stale request
    assert list(out.iterdir()) == [made] and "backup for the CLI: " + str(out) not in n1.log()


def test_backup_without_a_running_controller_is_one_line(tmp_path: Path, cluster: Cluster) -> None:
    n = cluster.bootstrap("b1")
    assert n.stop() == 0
    out = tmp_path / "out"
    out.mkdir()
    p = etcdward("backup", "--save-path", str(out), "--data-dir", str(n.data.root))
    assert p.returncode == 1 and "backup failed: etcd of" in p.stderr and "Traceback" not in p.stderr
    assert list(out.iterdir()) == []  # no archive, no temp file left
    p = etcdward("backup", "--save-path", str(out / "new" / "dir"), "--data-dir", str(n.data.root))
    assert p.returncode == 1 and list(out.iterdir()) == []  # nor the directories it would have created


def test_backup_list_without_the_default_dir_names_it_not_an_option(tmp_path: Path) -> None:
    p = etcdward("backup", "list", "--data-dir", str(tmp_path))
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert f"no backup directory {tmp_path}/backups" in p.stderr and "--dir:" not in p.stderr, p.stderr
    assert list(tmp_path.iterdir()) == []


def test_backup_list_exits_1_when_an_archive_does_not_verify(backed_up: tuple[Node, Path], tmp_path: Path) -> None:
    """The listing first (every row, the bad one says why), then one line naming the bad ones and
    exit code 1: a cron job that runs `backup list` learns that a backup cannot be restored."""
    _, good = backed_up
    shutil.copy(good, tmp_path / good.name)
    bad = damage(good, tmp_path / "etcdward_backup_2026-01-01T00_00_00Z.tar.gz", "wrong-sha")
    for fmt in ("table", "json"):
        p = etcdward("backup", "list", "--dir", str(tmp_path), "-o", fmt)
        assert p.returncode == 1, p
        assert p.stderr == (f"backup list: 1 of 2 archive(s) in {tmp_path} do not verify: {bad.name}\n"), p.stderr
        assert good.name in p.stdout and bad.name in p.stdout
    bad.unlink()
    p = etcdward("backup", "list", "--dir", str(tmp_path))
    assert p.returncode == 0 and p.stderr == "", p
