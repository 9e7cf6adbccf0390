"""What every bench shares: a cluster of loopback controllers in a temporary folder."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.cluster import Cluster


@contextlib.contextmanager
def temp_cluster(prefix: str, keep: bool) -> Iterator[Cluster]:
    """A Cluster under a new temporary folder; every process is killed at the end, and the
    folder removed unless keep (then its path is printed)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = Cluster(root)
    try:
        yield cluster
    finally:
        cluster.teardown()
        if keep:
            print(f"data and logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
