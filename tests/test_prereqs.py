"""The prerequisite mechanism (tests/prereqs.py) on a generated test run in a child pytest:
plain pytest skips a test whose prerequisite is missing; with ETCDWARD_REQUIRE_PREREQS=1 (the
README's test command) it fails, naming the prerequisite, and so does any unmarked skip."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import prereqs

GENERATED = '''
import pytest
from tests.prereqs import needs


@pytest.fixture
def cluster():
    yield None


def test_uses_cluster(cluster):
    pass


@needs("etcd")
def test_needs_etcd():
    pass


def test_adhoc_skip():
    pytest.skip("no frobnicator here")


@pytest.mark.allow_skip("this platform cannot")
def test_allowed_skip():
    pytest.skip("this platform cannot do that")


@pytest.mark.allow_skip("this platform cannot")
def test_allowed_skip_other_reason():
    pytest.skip("no frobnicator here either")


def test_plain():
    pass
'''

SKIPS_ITSELF = '''
import pytest
pytest.importorskip("etcdward_no_such_module")
'''


def run_child(tmp_path: Path, require: bool) -> tuple[int, str, dict[str, str]]:
    """(exit code, output, {test or module name: passed|skipped|failure|error}) of the child."""
    # not the repo's settings
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (tmp_path / "test_generated.py").write_text(GENERATED)
    (tmp_path / "test_skips_itself.py").write_text(SKIPS_ITSELF)
    no_etcd = tmp_path / "empty-bin"
    no_etcd.mkdir(exist_ok=True)
    repo = str(Path(prereqs.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != prereqs.REQUIRE_ENV}
    env.update(PATH=str(no_etcd), ETCDWARD_ETCD_BIN="/nonexistent",
               PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p))
    if require:
        env[prereqs.REQUIRE_ENV] = "1"
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.prereqs", "-p", "no:cacheprovider",
                        "--continue-on-collection-errors", "-rA", "-q", "--junitxml", str(tmp_path / "junit.xml"), "--rootdir", str(tmp_path),
                        str(tmp_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    outcomes = {}
    for case in ET.parse(tmp_path / "junit.xml").iter("testcase"):
        name = case.get("name") or case.get("classname", "").rsplit(".", 1)[-1]
        worst = [c.tag for c in case if c.tag in ("skipped", "failure", "error")]
        outcomes[name] = "error" if "error" in worst else worst[0] if worst else "passed"
    return p.returncode, p.stdout + p.stderr, outcomes


def test_plain_pytest_skips_a_missing_prerequisite(tmp_path: Path) -> None:
    rc, out, got = run_child(tmp_path, require=False)
    assert rc == 0, out
    assert got["test_uses_cluster"] == "skipped"
    assert got["test_needs_etcd"] == "skipped"
    assert "missing prerequisite -- etcd: no etcd binary (ETCDWARD_ETCD_BIN=/nonexistent" in out, out
    assert got["test_adhoc_skip"] == "skipped"
    assert got["test_allowed_skip"] == "skipped"
    assert got["test_allowed_skip_other_reason"] == "skipped"
    assert got["test_skips_itself"] == "skipped"
    assert got["test_plain"] == "passed"


def test_the_test_command_fails_naming_the_missing_prerequisite(tmp_path: Path) -> None:
    rc, out, got = run_child(tmp_path, require=True)
    assert rc == 1, out
    assert got["test_uses_cluster"] == "error"  # fails at setup, before any fixture runs
    assert got["test_needs_etcd"] == "error"
    assert out.count("missing prerequisite -- etcd: no etcd binary (ETCDWARD_ETCD_BIN=/nonexistent") >= 2, out
    assert "ETCDWARD_REQUIRE_PREREQS is set, so this fails instead of skipping" in out
    # any other skip fails too, with its reason ...
    assert got["test_adhoc_skip"] == "failure"
    assert "skipped (no frobnicator here), but ETCDWARD_REQUIRE_PREREQS is set" in out
    assert got["test_skips_itself"] == "error"  # a module that skips itself: a collection error
    assert "etcdward_no_such_module" in out
    # ... unless the test allows a skip with that reason (one that is not about a prerequisite)
    assert got["test_allowed_skip"] == "skipped"
    assert got["test_allowed_skip_other_reason"] == "failure"
    assert got["test_plain"] == "passed"


def test_needs_rejects_an_unknown_prerequisite() -> None:
    with pytest.raises(ValueError, match="unknown prerequisites"):
        prereqs.needs("etcd", "etcdd")
