"""Restore (issue 10): a backup of a 3-node cluster restored on another address, fresh nodes
joining it, the old nodes fenced; every refusal changes nothing; `backup - | restore -`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from etcdward.backup.etcdtool import BUMP_REVISION, find_tool
from tests.join_helpers import api_client, bearer_of, make_token
from tests.cluster import Cluster, Node, _api_up, next_address, wait_for
from tests.test_backup import damage
from tests.test_bad_input import assert_refused, etcdward, fingerprint

KEYS = 60


def can_bump_revisions() -> bool:
    return find_tool(os.environ.get("ETCDWARD_ETCD_BIN") or shutil.which("etcd") or "etcd").can_bump


@dataclass
class ConfigFileNode(Node):
    """A node started with a config file written by someone else (restore --config-out)."""
    config_path: Path | None = None

    def config(self) -> dict[str, Any]:
        assert self.config_path is not None
        return yaml.safe_load(self.config_path.read_text())


def records(node: Node) -> dict[str, dict[str, Any]]:
    out = node.cli("get", "etcdmembers", "-o", "json", "--data-dir", str(node.data.root)).stdout
    return {r["metadata"]["name"]: r for r in json.loads(out)["items"]}


def joined(rec: dict[str, Any]) -> str:
    return next(c["status"] for c in rec["status"]["conditions"] if c["type"] == "Joined")


def records_match_members(node: Node) -> bool:
    members = {m.name: m.hex_id for m in node.members()}
    recs = records(node)
    return (set(recs) == set(members)
            and all(recs[n]["status"]["memberID"] == i and joined(recs[n]) == "True" for n, i in members.items()))


def restore_into(root: Path, archive: Path | None, name: str = "n1", stdin_from: list[str] | None = None,
                 address: str | None = None) -> tuple[ConfigFileNode, subprocess.CompletedProcess[str]]:
    """restore into a fresh data dir under root with a new peer address and --config-out (the
    node runs with that config). With stdin_from, the archive is piped in (restore -)."""
    root.mkdir(parents=True, exist_ok=True)
    node = ConfigFileNode(name, root, address=address or next_address(), config_path=root / f"{name}.out.yaml")
    args = ["restore", "-" if archive is None else str(archive), "--data-dir", str(node.data.root),
            "--peer-address", node.address, "--config-out", str(node.config_path)]
    if stdin_from is None:
        p = etcdward(*args, timeout=120)
    else:
        producer = subprocess.Popen(stdin_from, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p = subprocess.run([sys.executable, "-m", "etcdward", *args], stdin=producer.stdout, capture_output=True,
                           text=True, timeout=120)
        assert producer.wait(60) == 0, producer.stderr.read() if producer.stderr else ""
    assert p.returncode == 0, p.stderr
    cfg = yaml.safe_load(node.config_path.read_text())
    assert cfg["spec"]["storage"]["etcd"]["peerAddress"] == node.address
    assert cfg["spec"]["api"].get("address") in (None, node.address)
    node.client_port = cfg["spec"]["storage"]["etcd"]["clientPort"]
    return node, p


def restore_and_start(root: Path, archive: Path) -> tuple[ConfigFileNode, subprocess.CompletedProcess[str]]:
    node, p = restore_into(root, archive)
    node.start()
    node.wait_ready(60)
    return node, p


@pytest.fixture(scope="module")
def old_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """n1..n3 with data and a token made before the backup; the backup; then every node dead."""
    from tests import prereqs

    prereqs.require("etcd")
    root = tmp_path_factory.mktemp("old")
    c = Cluster(root)
    try:
        n1 = c.bootstrap("n1")
        token = n1.token("2h")
        for name in ("n2", "n3"):
            c.node(name).start(token)
        c.wait_voters(n1, {"n1", "n2", "n3"})
        for i in range(KEYS):
            assert n1.etcdctl("put", f"/data/{i:03}", f"v{i}").returncode == 0
        wait_for(lambda: records_match_members(n1), 60, "records == members", node=n1)
        old_id = format(n1.status().cluster_id, "x")
        p = etcdward("backup", "--save-path", str(root / "backups"), "--data-dir", str(n1.data.root))
        assert p.returncode == 0, p.stderr
        for n in c.nodes:
            n.kill9()
        yield c, Path(p.stdout.strip()), token, old_id
    finally:
        c.teardown()


def test_restore_on_another_address_fresh_nodes_join_old_nodes_fenced(old_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old, archive, token, old_id = old_cluster
    o1, o2, o3 = old.nodes
    shutil.rmtree(o1.data.root)  # n1 and n2 are gone for good; n3's disk survives
    shutil.rmtree(o2.data.root)
    new = Cluster(tmp_path)
    try:
        r1, p = restore_and_start(tmp_path, archive)
        new.nodes.append(r1)
        if can_bump_revisions():  # etcdutl (3.5+): watchers must never see revisions go backwards
            assert "revisions bumped" in p.stdout, p.stdout
            got = json.loads(r1.etcdctl("get", "/data/000", "-w", "json").stdout)
            assert got["header"]["revision"] > BUMP_REVISION
        else:
            assert "revisions not bumped" in p.stdout, p.stdout
        st = r1.status()
        new_id = format(st.cluster_id, "x")
        assert new_id != old_id
        ident = json.loads(r1.data.identity_file.read_text())
        assert ident == {"name": "n1", "clusterID": new_id, "memberID": format(st.member_id, "x")}
        assert [(m.name, m.peer_url) for m in r1.members()] == [("n1", f"https://{r1.address}:2380")]
        # the token made before the backup is valid again (its secret; its URL names the dead n1's join
        # API, so it is given the restored node's address); n2 is rebuilt on its old address
        old_secret = bearer_of(token)
        wait_for(lambda: _api_up(r1), 30, "restored join API")
        with api_client(r1, old_secret) as api:
            assert api.get("/v1beta1/ca").status_code == 200
        n2 = new.node("n2", address=o2.address)
        n2.start(make_token(f"https://{r1.address}:9443", r1.data.ca_crt.read_bytes(), old_secret))
        n3 = new.node("n3")
        n3.start(r1.token())
        new.wait_voters(r1, {"n1", "n2", "n3"})
        n2.wait_ready()
        n3.wait_ready()
        got = r1.etcdctl("get", "/data/", "--prefix", "--keys-only").stdout.split()
        assert got == [f"/data/{i:03}" for i in range(KEYS)]
        assert {format(n.status().cluster_id, "x") for n in (r1, n2, n3)} == {new_id}
        wait_for(lambda: records_match_members(r1), 60, "records == members (old records re-bound)", node=r1)

        # old n3 starts again on its old data: its peers answer for another cluster -> fenced
        o3.start()
        code = o3.wait_exit(60)
        assert code == 1, o3.log()[-3000:]
        assert "is gone" in o3.log() and o3.data.tombstone.exists() and not o3.data.etcd_db.exists()
        s = etcdward("status", "--data-dir", str(o3.data.root))
        assert_refused(s, "is gone")
        assert "etcdward reset" in s.stderr
        assert new.voters(r1) == {"n1", "n2", "n3"} and len(r1.members()) == 3
        o3.start()  # and it stays fenced
        assert o3.wait_exit(30) == 1 and "removed from its etcd cluster" in o3.log().splitlines()[-1]
    finally:
        new.teardown()


def test_backup_to_stdout_restore_from_stdin(cluster: Cluster, tmp_path: Path) -> None:
    b1 = cluster.bootstrap("b1")
    for i in range(10):
        assert b1.etcdctl("put", f"/pipe/{i}", "x").returncode == 0
    backup = [sys.executable, "-m", "etcdward", "backup", "--save-path", "-", "--data-dir", str(b1.data.root)]
    r1, _ = restore_into(tmp_path / "restored", None, name="b1", stdin_from=backup)
    cluster.nodes.append(r1)
    old_id = b1.status().cluster_id
    assert b1.stop() == 0  # the restored node has its client port (the archived config's)
    r1.start()
    r1.wait_ready(60)
    assert r1.etcdctl("get", "/pipe/", "--prefix", "--keys-only").stdout.split() == [f"/pipe/{i}" for i in range(10)]
    assert r1.status().cluster_id != old_id


# -- refusals: nothing changes -------------------------------------------------------------------
DAMAGE = [
    ("not-gzip", "not a gzip-compressed tar archive"),
    ("truncated", "is truncated"),
    ("foreign-tar", "unexpected member"),
    ("missing:etcd-snapshot.db", "missing member(s): etcd-snapshot.db"),
    ("wrong-sha", "do not match the manifest"),
    ("snapshot-flipped", "do not match the manifest"),
    ("etcd-hash-broken", "etcd's own integrity hash does not match"),
    ("newer-etcd", "newer than the local etcd"),
]


def test_refusals_change_nothing(cluster: Cluster, tmp_path: Path) -> None:
    b1 = cluster.bootstrap("b1")
    assert b1.etcdctl("put", "/k", "v").returncode == 0
    p = etcdward("backup", "--save-path", str(tmp_path / "b"), "--data-dir", str(b1.data.root))
    assert p.returncode == 0, p.stderr
    good = Path(p.stdout.strip())

    # while its controller runs (the lock and the state it guards stay as they are)
    guarded = {k: v for k, v in fingerprint(b1.data.root).items() if k.startswith(("pki", "state", "etcdward.lock"))}
    assert_refused(etcdward("restore", str(good), "--data-dir", str(b1.data.root)), "in use by etcdward controller")
    assert {k: v for k, v in fingerprint(b1.data.root).items() if k.startswith(("pki", "state", "etcdward"))} == guarded

    # onto a data dir with a db
    assert b1.stop() == 0
    before = fingerprint(b1.data.root)
    r = etcdward("restore", str(good), "--data-dir", str(b1.data.root))
    assert_refused(r, "already has an etcd db")
    assert "etcdward reset" in r.stderr and fingerprint(b1.data.root) == before

    # damaged or foreign archives, into a data dir with only logs and into one that does not exist
    empty = tmp_path / "empty"
    (empty / "logs").mkdir(parents=True)
    (empty / "logs" / "old.log").write_text("kept\n")
    for case, needle in DAMAGE:
        bad = damage(good, tmp_path / f"{case.replace(':', '-')}.tar.gz", case)
        for target in (empty, tmp_path / "missing"):
            before = fingerprint(tmp_path)
            p = etcdward("restore", str(bad), "--data-dir", str(target), "--peer-address", "127.77.250.1")
            assert_refused(p, needle)
            assert "was not changed" in p.stderr, p.stderr
            assert fingerprint(tmp_path) == before, case  # no data dir made, no staging dir left
    # a bad archive on stdin, too
    p = subprocess.run([sys.executable, "-m", "etcdward", "restore", "-", "--data-dir", str(empty)],
                       stdin=(tmp_path / "truncated.tar.gz").open("rb"), capture_output=True, text=True, timeout=60)
    assert_refused(p, "the archive on stdin is truncated")
