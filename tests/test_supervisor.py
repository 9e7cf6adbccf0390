"""Supervisor details that need no etcd: what counts as "this member was removed"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from etcdward.paths import DataDir
from etcdward.supervisor import MAX_FAST_CRASHES, MemberWasRemoved, Supervisor, SupervisorGaveUp, last_run_output

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


def test_summary_keeps_the_fatal_cause_from_the_middle(tmp_path: Path) -> None:
    """An elided crash summary must still say why etcd died (issue 8: "no space left on
    device" used to vanish in "... (16 lines) ...")."""
    log = tmp_path / "etcd.log"
    lines = [f"noise {i}" for i in range(40)]
    lines[15] = "C | mvcc/backend: cannot commit tx (write db: no space left on device)"
    log.write_text("--- etcdward: starting etcd x\n" + "\n".join(lines) + "\n")
    out = last_run_output(log)
    assert "no space left on device" in out
    assert "noise 20\n" not in out and "(19 lines)" in out


def test_gave_up_names_the_cause_in_its_first_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("etcdward.supervisor.BACKOFF", (0.01,))  # time, not behaviour
    data = DataDir(tmp_path)
    script = tmp_path / "fake-etcd"
    noise = "\n".join(f"echo noise {i}" for i in range(30))
    script.write_text(f"#!/bin/sh\necho start\necho 'panic: write wal: no space left on device'\n{noise}\nexit 2\n")
    script.chmod(0o755)
    with pytest.raises(SupervisorGaveUp) as e:
        asyncio.run(asyncio.wait_for(Supervisor(str(script), [], data).run(), 60))
    first = str(e.value).splitlines()[0]
    assert "last exit code 2): no space left on device" in first, first


def test_restart_on_request_is_not_a_crash(tmp_path: Path) -> None:
    """Supervisor.restart() (the etcd#14523 workaround) starts etcd again at once, uncounted."""
    data = DataDir(tmp_path)

    async def go() -> None:
        sup = Supervisor("/bin/sleep", ["60"], data)
        task = asyncio.create_task(sup.run())
        while sup.proc is None:
            await asyncio.sleep(0.01)
        first = sup.proc.pid
        for _ in range(MAX_FAST_CRASHES + 1):  # more than a crash loop would allow
            await sup.restart()
            while sup.proc.pid == first or not sup.alive():
                await asyncio.sleep(0.01)
            first = sup.proc.pid
        assert sup.restarts == 0 and not task.done()
        await sup.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(asyncio.wait_for(go(), 30))
