from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.prereqs import (
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)

# The prerequisite hooks (tests/prereqs.py): a missing etcd, root, tool, ... skips under plain
# pytest and fails under ETCDWARD_REQUIRE_PREREQS=1 (bash scripts/run.sh test).
__all__ = ["cluster", "pytest_collection_modifyitems", "pytest_configure", "pytest_make_collect_report",
           "pytest_runtest_makereport", "pytest_runtest_setup"]


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.teardown()
