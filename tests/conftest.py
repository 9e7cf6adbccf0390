from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cluster import Cluster


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not (os.environ.get("ETCDWARD_ETCD_BIN") or shutil.which("etcd")):
        skip = pytest.mark.skip(reason="no etcd binary (apt-get install etcd-server)")
        for item in items:
            if "cluster" in item.fixturenames:
                item.add_marker(skip)


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.teardown()
