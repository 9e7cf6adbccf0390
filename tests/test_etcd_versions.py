"""Issue 13 part 2: which etcd binary a controller may run on its data dir (a table in code,
tested here), the version pin in state/, and the start refusal: one line, nothing changed."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from etcdward.etcdversions import UPGRADE_FROM, Version, parse_version_output, skew, start_refusal
from tests.cluster import Cluster, Node, wait_for
from tests.etcdbins import etcd_of, version_of
from tests.prereqs import needs
from tests.test_bad_input import assert_refused, etcdward, fingerprint

V = Version.parse


def test_parse() -> None:
    assert parse_version_output("etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19\n") == (3, 4, 23)
    assert parse_version_output("etcd Version: 3.5.30\nGit SHA: abc\n") == Version(3, 5, 30)
    assert parse_version_output("garbage") is None
    assert V("3.6.0-rc.1") == (3, 6, 0) and V("not_decided") is None and V("3.5") == (3, 5, 0)
    assert str(Version(3, 5, 30)) == "3.5.30"


@pytest.mark.parametrize("new, last, cluster, refused", [
    ("3.4.23", None, None, None),  # a fresh data dir: anything supported
    ("3.3.25", None, None, "too old"),
    ("3.4.23", "3.4.23", "3.4.0", None),  # same version
    ("3.5.30", "3.4.23", "3.4.0", None),  # one minor up
    ("3.5.16", "3.5.16", "3.5.0", None),
    ("3.5.30", "3.5.16", "3.5.0", None),  # patch upgrade
    ("3.5.16", "3.5.30", "3.5.0", "older than etcd 3.5.30"),  # patch downgrade
    ("3.4.23", "3.5.30", "3.5.0", "below this cluster's version 3.5"),  # minor downgrade
    ("3.4.23", "3.4.23", "3.5.0", "below this cluster's version 3.5"),  # the cluster moved on without it
    ("3.6.0", "3.4.23", "3.4.0", "skip a minor version"),
    ("4.0.0", "3.6.5", "3.6.0", "skip a minor version"),
    ("3.6.0", "3.5.16", "3.5.0", "only from etcd 3.5.26"),  # UPGRADE_FROM
    ("3.6.0", "3.5.25", "3.5.0", "only from etcd 3.5.26"),
    ("3.6.0", "3.5.26", "3.5.0", None),
    ("3.6.11", "3.5.30", "3.5.0", None),
    ("3.5.30", None, "3.5.0", None),  # no pin (older etcdward): only the cluster version counts
])
def test_start_rules(new: str, last: str | None, cluster: str | None, refused: str | None) -> None:
    why = start_refusal(V(new), V(last) if last else None, V(cluster) if cluster else None)
    if refused is None:
        assert why is None, why
    else:
        assert why is not None and refused in why, why


def test_upgrade_table_is_one_minor_apart() -> None:
    for (major, minor), floor in UPGRADE_FROM.items():
        assert (floor.major, floor.minor) == (major, minor - 1)


def test_skew() -> None:
    assert skew({"n1": "3.4.23", "n2": "3.5.30", "n3": "3.5.16"}) is None
    assert skew({"n1": "3.4.23"}) is None
    w = skew({"n1": "3.4.23", "n2": "3.6.1", "n3": ""})
    assert w is not None and "n1 3.4.23, n2 3.6.1" in w


# -- against real etcd ----------------------------------------------------------------------

def fake_etcd(tmp_path: Path, version: str) -> str:
    """A binary that only answers --version: a refused start never runs it."""
    p = tmp_path / f"etcd-{version}"
    p.write_text(f"#!/bin/sh\necho 'etcd Version: {version}'\necho 'Git SHA: fake'\n"
                 f"[ \"$1\" = --version ] || {{ echo started >> {tmp_path}/fake-started; exit 1; }}\n")
    p.chmod(0o755)
    return str(p)


def pin(n: Node) -> dict[str, str]:
    return json.loads(n.data.etcd_version_file.read_text())


def test_pin_written_and_refusals_change_nothing(cluster: Cluster, tmp_path: Path) -> None:
    n1 = cluster.bootstrap("n1")
    real = version_of(os.environ.get("ETCDWARD_ETCD_BIN") or shutil.which("etcd") or "etcd") or "?"
    wait_for(lambda: pin(n1).get("cluster"), 30, "cluster version pinned")
    assert pin(n1)["etcd"] == real, pin(n1)
    assert V(pin(n1)["cluster"])[:2] == V(real)[:2]
    assert n1.stop() == 0
    cases = [  # (binary version, what the one line says)
        (f"{V(real).major}.{V(real).minor + 2}.0", "would skip a minor version"),
        ("3.3.25", "too old"),
    ]
    if V(real).patch > 0:
        cases.append((f"{V(real).major}.{V(real).minor}.{V(real).patch - 1}", f"older than etcd {real}"))
    for version, needle in cases:
        n1.extra_config = {"spec": {"storage": {"etcd": {"binary": fake_etcd(tmp_path, version)}}}}
        n1.write_config(n1.config())
        before = fingerprint(n1.data.root)
        p = etcdward("controller", "-c", str(n1.config_file), "--data-dir", str(n1.data.root))
        assert_refused(p, needle)
        assert fingerprint(n1.data.root) == before
    assert not (tmp_path / "fake-started").exists()
    n1.extra_config = {}
    n1.start()
    n1.wait_ready(60)


@needs("etcd-3.4.23", "etcd-3.5.30")
def test_upgrade_3_4_to_3_5_then_no_way_back(cluster: Cluster) -> None:
    """One node: 3.4.23 -> 3.5.30 keeps its data and pins 3.5.30; 3.4.23 is then refused."""
    old, new = etcd_of("3.4.23"), etcd_of("3.5.30")
    n1 = cluster.node("n1", extra_config={"spec": {"storage": {"etcd": {"binary": old}}}})
    n1.start()
    n1.wait_ready(60)
    assert n1.etcdctl("put", "/k", "v").returncode == 0
    wait_for(lambda: pin(n1) == {"etcd": "3.4.23", "cluster": "3.4.0"}, 30, "3.4 pinned")
    assert n1.stop() == 0
    n1.extra_config = {"spec": {"storage": {"etcd": {"binary": new}}}}
    n1.start()
    n1.wait_ready(60)
    assert n1.status().version == "3.5.30"
    assert "v" in n1.etcdctl("get", "/k", "--print-value-only").stdout
    wait_for(lambda: pin(n1) == {"etcd": "3.5.30", "cluster": "3.5.0"}, 60, "3.5 pinned")
    assert n1.stop() == 0
    n1.extra_config = {"spec": {"storage": {"etcd": {"binary": old}}}}
    n1.write_config(n1.config())
    before = fingerprint(n1.data.root)
    p = etcdward("controller", "-c", str(n1.config_file), "--data-dir", str(n1.data.root))
    assert_refused(p, "below this cluster's version 3.5")
    assert fingerprint(n1.data.root) == before


def test_member_update_is_never_called() -> None:
    """Before 3.5.31/3.6.12, MemberUpdate on a learner silently promotes it: etcdward never
    updates a member (peer URLs are fixed at the add; a changed address means leave and rejoin)."""
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "etcdward"
    hits = [f"{p.relative_to(src)}:{i}" for p in sorted(src.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"member_?update|update_?member", line, re.IGNORECASE)]
    assert hits == [], hits
