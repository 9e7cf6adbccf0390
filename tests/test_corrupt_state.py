"""Issue 9: a damaged file under state/ gives one line and a non-zero exit, never a traceback,
and a refused start leaves the data dir exactly as it was."""

from __future__ import annotations

import pytest

from tests.cluster import Cluster, Node
from tests.test_bad_input import assert_refused, etcdward, fingerprint

GARBAGE = {"not-json": b"{not json", "a-list": b"[1, 2]", "binary": b"\xff\xfe\x00", "empty": b""}


@pytest.fixture
def stopped(cluster: Cluster) -> Node:
    n1 = cluster.bootstrap("n1")
    assert n1.stop() == 0
    return n1


def test_each_state_file_corrupted_in_turn(stopped: Node) -> None:
    data = stopped.data
    cases = [  # (file, what the refusal names)
        (data.identity_file, "identity.json"),
        (data.tombstone, "removed from its etcd cluster"),  # a tombstone counts whatever it holds
        (data.etcd_version_file, "etcd-version.json"),
    ]
    for path, needle in cases:
        original = path.read_bytes() if path.exists() else None
        try:
            for label, content in GARBAGE.items():
                path.write_bytes(content)
                before = fingerprint(data.root)
                p = etcdward("controller", "-c", str(stopped.config_file), "--data-dir", str(data.root))
                assert_refused(p, needle)
                assert fingerprint(data.root) == before, (path.name, label)
                # the CLI reads the same files: one line too (exit 1 for the files it reads; for
                # etcd-version.json, which it does not read, exit 2: etcd is stopped, so it says that)
                st = etcdward("status", "--data-dir", str(data.root), timeout=30)
                want = 2 if path == data.etcd_version_file else 1
                assert st.returncode == want and "Traceback" not in st.stderr, (label, st.stderr)
                assert len([line for line in st.stderr.splitlines() if line.strip()]) == 1, st.stderr
        finally:
            if original is None:
                path.unlink()
            else:
                path.write_bytes(original)


def test_corrupt_join_pin_without_db_refuses(stopped: Node) -> None:
    data = stopped.data
    data.etcd.rename(data.root / "etcd.moved")  # a node whose db is gone, mid-join
    for content in GARBAGE.values():
        data.join_file.write_bytes(content)
        before = fingerprint(data.root)
        p = etcdward("controller", "-c", str(stopped.config_file), "--data-dir", str(data.root))
        assert_refused(p, "bootstrapping would create a second cluster")
        assert fingerprint(data.root) == before


def test_corrupt_effective_config_is_one_line_for_every_command(stopped: Node) -> None:
    cfg = stopped.data.effective_config
    for content in GARBAGE.values():
        cfg.write_bytes(content)
        for args in (["status"], ["etcd", "member-list"], ["get", "etcdmembers"], ["token", "list"],
                     ["etcd", "leave"]):
            p = etcdward(*args, "--data-dir", str(stopped.data.root), timeout=30)
            assert_refused(p, str(cfg))
