"""`etcdward up`, the README's first command: a cluster forms, is verified and stops cleanly."""

from __future__ import annotations

from pathlib import Path

from tests.prereqs import needs
from tests.test_bad_input import etcdward


@needs("etcd")
def test_up_once_forms_verifies_and_stops(tmp_path: Path) -> None:
    p = etcdward("up", "--nodes", "2", "--once", "--dir", str(tmp_path / "up"), timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "cluster of 2 verified; stopping" in p.stderr
    assert "n1" in p.stdout and "n2" in p.stdout
    again = etcdward("up", "--nodes", "2", "--once", "--dir", str(tmp_path / "up"), timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]  # the same dir restarts the existing members
