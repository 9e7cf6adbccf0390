"""Supervisor details that need no etcd: what counts as "this member was removed"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from etcdward.paths import DataDir
from etcdward.supervisor import MemberWasRemoved, Supervisor, SupervisorGaveUp, last_run_output

MARKER = "the member has been permanently removed from the cluster"


def test_last_run_output_ignores_earlier_runs(tmp_path: Path) -> None:
    log = tmp_path / "etcd.log"
    log.write_text(f"--- etcdward: starting etcd a\n{MARKER}\n--- etcdward: starting etcd b\nfine\n")
    assert last_run_output(log) == "fine"


def test_old_removal_line_does_not_tombstone_a_new_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("etcdward.supervisor.BACKOFF", (0.01,))  # time, not behaviour
    data = DataDir(tmp_path)
    data.logs.mkdir(parents=True)
    data.etcd_log.write_text(f"--- etcdward: starting etcd old\n{MARKER}\n")
    sup = Supervisor("/bin/false", [], data)
    with pytest.raises(SupervisorGaveUp):  # crashes, but is not mistaken for a removal
        asyncio.run(asyncio.wait_for(sup.run(), 60))


def test_removal_in_this_run_is_reported(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    script = tmp_path / "fake-etcd"
    script.write_text(f"#!/bin/sh\necho '{MARKER}'\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(MemberWasRemoved):
        asyncio.run(asyncio.wait_for(Supervisor(str(script), [], data).run(), 30))
