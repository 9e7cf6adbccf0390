"""Issue 8: what a new user broke in an afternoon, refused before anything is written.

Every case runs the real CLI and checks the same four things: a non-zero exit, one line on
stderr that names the problem, no traceback, and a data dir that is byte-for-byte as it was
(or still absent)."""

from __future__ import annotations

import errno
import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etcdward.paths import DataDir
from tests.prereqs import needs


def etcdward(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "etcdward", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def fingerprint(d: Path) -> dict[str, str]:
    """Every path under d with the sha256 of its content (dirs as "dir")."""
    if not d.exists():
        return {}
    return {str(p.relative_to(d)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*"))}


def assert_refused(p: subprocess.CompletedProcess[str], needle: str, exit_code: int = 1) -> None:
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == exit_code, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    assert len(lines) == 1, p.stderr
    assert needle in lines[0], p.stderr


# -- item 2: an empty token never means "no token" --------------------------------------------
@pytest.mark.parametrize("how", ["empty-arg", "blank-arg", "empty-file", "blank-file"])
@pytest.mark.parametrize("existing", [False, True], ids=["new-dir", "existing-dir"])
def test_empty_token_is_refused_and_nothing_written(tmp_path: Path, how: str, existing: bool) -> None:
    data = tmp_path / "data"
    if existing:
        (data / "etcd" / "member" / "wal").mkdir(parents=True)  # a partial dir that a bootstrap would move aside
        (data / "keep").write_text("x")
    before = fingerprint(data)
    args = ["controller", "--data-dir", str(data), "-c", str(tmp_path / "c.yaml")]
    (tmp_path / "c.yaml").write_text("spec: {storage: {etcd: {peerAddress: 127.77.251.1}}}")
    if how.endswith("arg"):
        args.insert(1, "" if how == "empty-arg" else "  \t ")
    else:
        tf = tmp_path / "token"
        tf.write_text("" if how == "empty-file" else " \n\n ")
        args += ["--token-file", str(tf)]
    p = etcdward(*args)
    assert_refused(p, "join token given is empty")
    assert "BOOTSTRAP" not in p.stderr
    assert fingerprint(data) == before
    assert data.exists() == existing


def test_empty_token_is_ignored_by_a_node_that_has_data(tmp_path: Path) -> None:
    """A joined node restarts whatever the token says (k0sctl deletes token files): only the
    decision table says so here; the real restart is covered with a deleted token file."""
    from etcdward.decision import Action, Disk, Token, decide

    assert decide(Disk(has_db=True), Token.BLANK).action is Action.START


# -- item 3: durations that round to zero, are negative or not finite ----------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "0", "0.0001", "abc", ""])
def test_join_timeout_must_be_a_sane_number(tmp_path: Path, value: str) -> None:
    data = tmp_path / "data"
    p = etcdward("controller", "sometoken", "--join-timeout", value, "--data-dir", str(data))
    assert p.returncode == 2 and "--join-timeout" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not data.exists()


def test_seconds_out_of_bounds_say_which_bound() -> None:
    from etcdward.durations import check_seconds

    for value, message in [(0.0, "0 is less than the minimum of 1s"), (1e12, "1e+12 exceeds the maximum of 292 years")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_seconds(value, minimum=1.0)


@pytest.mark.parametrize("text,needle", [
    ("spec: {reconciler: {learnerStartTimeout: .nan}}", "spec.reconciler.learnerStartTimeout"),
    ("spec: {reconciler: {learnerStartTimeout: .inf}}", "spec.reconciler.learnerStartTimeout"),
    ("spec: {reconciler: {learnerStartTimeout: -5}}", "spec.reconciler.learnerStartTimeout"),
    ("spec: {reconciler: {learnerStartTimeout: 0.0001}}", "spec.reconciler.learnerStartTimeout"),
    ("spec: {reconciler: {leaseTTL: 2.5}}", "spec.reconciler.leaseTTL"),
])
def test_duration_config_keys_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert_refused(etcdward("config", "validate", "-c", str(cfg)), needle)


# -- item 5: every conflict that the config shows is refused before the first write -------------
CONFIGS = {
    "api-port-is-peer-port": ("spec: {api: {port: 2380}, storage: {etcd: {peerAddress: 127.77.251.2}}}",
                              "spec.api.port: 127.77.251.2:2380 is also spec.storage.etcd.peerPort"),
    "api-port-is-client-port": ("spec: {api: {address: 127.0.0.1, port: 2379}, storage: {etcd: {peerAddress: "
                                "127.77.251.2}}}", "is also spec.storage.etcd.clientPort"),
    "peer-port-is-client-port-on-loopback": ("spec: {storage: {etcd: {peerAddress: 127.0.0.1, peerPort: 2379}}}",
                                             "spec.storage.etcd.peerPort: 127.0.0.1:2379 is also"),
    "boolean-port": ("spec: {api: {port: true}}", "spec.api.port"),
    "number-as-string-key": ("spec: {storage: {etcd: {binary: 5}}}", "spec.storage.etcd.binary"),
    "string-port": ("spec: {api: {port: '9443'}}", "spec.api.port"),
    "force-new-cluster": ("spec: {storage: {etcd: {extraArgs: {force-new-cluster: true}}}}", "force-new-cluster"),
    "initial-cluster-state": ("spec: {storage: {etcd: {extraArgs: {initial-cluster-state: new}}}}",
                              "initial-cluster-state"),
    "newline-in-value": ('spec: {storage: {etcd: {extraArgs: {heartbeat-interval: "100\\n--force-new-cluster"}}}}',
                         "newline"),
    "unspecified-peer-address": ("spec: {storage: {etcd: {peerAddress: 0.0.0.0}}}", "spec.storage.etcd.peerAddress"),
    "unspecified-ipv6-peer-address": ("spec: {storage: {etcd: {peerAddress: '::'}}}", "spec.storage.etcd.peerAddress"),
    "duplicate-key": ("spec:\n  api: {port: 9443}\n  api: {port: 9444}\n", "duplicate key 'api'"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_config_is_refused_before_any_write(tmp_path: Path, case: str) -> None:
    text, needle = CONFIGS[case]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert_refused(etcdward("config", "validate", "-c", str(cfg)), needle)
    data = tmp_path / "data"
    p = etcdward("controller", "-c", str(cfg), "--data-dir", str(data))
    assert_refused(p, needle)
    assert p.stderr.startswith("etcdward controller: "), p.stderr
    assert not data.exists()


def test_config_file_that_is_not_utf8_or_is_a_directory(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("spec: {api: {sans: [caf\xe9.example]}}".encode("latin-1"))
    data = tmp_path / "data"
    for cfg, needle in ((bad, "not UTF-8 text"), (tmp_path, "Is a directory")):
        assert_refused(etcdward("config", "validate", "-c", str(cfg)), needle)
        assert_refused(etcdward("controller", "-c", str(cfg), "--data-dir", str(data)), needle)
    assert_refused(etcdward("controller", "--token-file", str(tmp_path), "--data-dir", str(data)), "Is a directory")
    assert not data.exists()


def test_corrupt_identity_file_is_one_line(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    data.state.mkdir(parents=True)
    for content in (b"{not json", b"[]", b'{"name": 5}', b"\xff\xfe"):
        data.identity_file.write_bytes(content)
        before = fingerprint(data.root)
        p = etcdward("controller", "--data-dir", str(data.root))
        assert_refused(p, "identity.json")
        assert fingerprint(data.root) == before
        assert_refused(etcdward("status", "--data-dir", str(data.root)), "etcd certificates")


def test_cli_without_effective_config_never_guesses_ports(tmp_path: Path) -> None:
    """`status` after state/config.yaml is gone used to try 127.0.0.1:2379 (someone else's etcd)."""
    data = DataDir(tmp_path / "data")
    ca, _ = data.etcd_cert("ca")
    ca.parent.mkdir(parents=True)
    ca.write_text("not used")
    for args in (["status"], ["etcd", "member-list"], ["get", "etcdmembers"], ["token", "list"],
                 ["token", "create", "--role", "controller"], ["etcd", "leave"]):
        p = etcdward(*args, "--data-dir", str(data.root), timeout=30)
        assert_refused(p, f"no effective config in {data.effective_config}")


@pytest.fixture
def small_tmpfs_cluster(tmp_path: Path):
    """A cluster whose node n1 has its data dir on a 200 MiB tmpfs (etcd preallocates two 64 MB
    WAL segments); the controller's own log stays outside, where it can still be written."""
    from tests.cluster import Cluster

    cluster = Cluster(tmp_path)
    mnt = tmp_path / "n1"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield cluster, mnt
    finally:
        cluster.teardown()
        for attempt in range(50):
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


@needs("root", "etcd")  # root: a data dir on a small tmpfs
def test_disk_full_while_running(small_tmpfs_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster, mnt = small_tmpfs_cluster
    n1 = cluster.bootstrap("n1")
    assert n1.data.root == mnt
    acked: dict[str, str] = {}
    for i in range(10):
        if n1.etcdctl("put", f"/small/{i}", f"v{i}").returncode == 0:
            acked[f"/small/{i}"] = f"v{i}"
    with (mnt / "filler").open("wb") as fh:  # fill the filesystem to the last block
        try:
            for _ in range(400):
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    big = "x" * 60_000
    end = time.monotonic() + 60
    for i in range(200):  # etcd's backend commit hits ENOSPC: writes stop being acknowledged
        if time.monotonic() > end or n1.etcdctl("put", f"/big/{i}", big).returncode != 0:
            break
        acked[f"/big/{i}"] = big
    assert n1.wait_exit(90) == 1, "the controller must stop with a reason, not hang or crash"
    lines = [line for line in n1.log().splitlines() if line.strip()]
    assert "Traceback" not in n1.log()
    assert lines[-1].startswith("etcdward controller: ") and "no space left on device" in lines[-1], lines[-5:]
    (mnt / "filler").unlink()
    n1.start()
    n1.wait_ready(60)
    for key, value in acked.items():  # nothing acknowledged was lost
        got = n1.etcdctl("get", key, "--print-value-only")
        assert got.returncode == 0 and got.stdout.rstrip("\n") == value, (key, got.stderr)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1", "not-an-ip"])
def test_restore_peer_address_is_checked_first(tmp_path: Path, address: str) -> None:
    """The address restore would advertise is refused naming the flag, before the archive is read."""
    data = tmp_path / "data"
    assert_refused(etcdward("restore", str(tmp_path / "none.tar.gz"), "--data-dir", str(data), "--peer-address",
                            address), "--peer-address")
    assert not data.exists()
