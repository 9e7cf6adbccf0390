from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests import prereqs
from tests.prereqs import (
    pytest_configure,
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)

# The prerequisite hooks (tests/prereqs.py): a missing etcd, root, tool, ... skips under plain
# pytest and fails under ETCDWARD_REQUIRE_PREREQS=1 (bash scripts/run.sh test).
__all__ = ["cluster", "pytest_collection_modifyitems", "pytest_configure", "pytest_make_collect_report",
           "pytest_runtest_makereport", "pytest_runtest_setup"]


# Tests that use fixed host resources run on one xdist worker, one after another (the test
# command runs the suite on 2 workers, `--dist loadgroup`): `etcdward up` listens on the
# playground's fixed 127.0.0.11-13 addresses and ports.
SERIAL_GROUPS = {"tests/test_playground.py": "playground",
                 "tests/test_datalock.py::test_up_": "playground"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    prereqs.pytest_collection_modifyitems(config, items)
    for item in items:
        for prefix, group in SERIAL_GROUPS.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.teardown()
