"""The data-dir lock (issue 8): one process at a time changes a data dir. A second controller or
a `reset` on a running node's data dir is refused with the holder's pid and changes nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cluster import Cluster, Node, _running, wait_for
from etcdward import datalock
from etcdward.paths import DataDir

HOLD = ("import sys, time\nfrom etcdward import datalock\nfrom etcdward.paths import DataDir\n"
        "datalock.acquire(DataDir.at(sys.argv[1]), 'controller')\nprint('locked', flush=True)\ntime.sleep(600)\n")
# Not etcdward: takes the flock and writes nothing, so only the kernel knows the holder.
HOLD_SILENTLY = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
                 "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(600)\n")


def _holder_process(code: str, arg: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", code, str(arg)], stdout=subprocess.PIPE, text=True)
    assert p.stdout and p.stdout.readline().strip() == "locked"
    return p


def _checksums(root: Path, *subdirs: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in subdirs for p in sorted((root / d).rglob("*")) if p.is_file()}


# -- the lock itself ----------------------------------------------------------------------------
def test_second_process_is_refused_with_the_holders_pid_until_the_holder_dies(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    holder = _holder_process(HOLD, data.root)
    try:
        t0 = time.monotonic()
        with pytest.raises(datalock.DataDirBusy) as refused:
            datalock.acquire(data, "reset")
        assert time.monotonic() - t0 < 0.5  # a live holder is named at once, no waiting
        assert refused.value.holder == datalock.Holder(holder.pid, "controller")
        assert str(refused.value) == (f"data dir {data.root} is in use by etcdward controller (pid {holder.pid}); "
                                      "stop that process first")
        assert datalock.holder(data) == datalock.Holder(holder.pid, "controller")
    finally:
        holder.kill()  # kill -9: the kernel drops the lock with the process
        holder.wait()
    assert datalock.holder(data) is None
    with datalock.acquire(data, "reset") as lock:
        assert data.lock_file.read_text() == f"{os.getpid()} reset\n"
        assert datalock.held_by_this_process(data)
        with pytest.raises(datalock.DataDirBusy):  # another open of the same file, same process
            datalock.acquire(data, "controller")
        # A child process does not inherit the lock's fd (it would keep the lock after we die).
        fds = subprocess.run(["sh", "-c", "ls -l /proc/$$/fd"], close_fds=False, capture_output=True,
                             text=True).stdout
        assert "etcdward.lock" not in fds and lock.path == data.lock_file
    assert not datalock.held_by_this_process(data)
    assert data.lock_file.exists()  # never deleted: unlink + flock would let two processes in


def test_a_holder_that_wrote_nothing_is_named_by_the_kernel(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    holder = _holder_process(HOLD_SILENTLY, data.lock_file)
    try:
        with pytest.raises(datalock.DataDirBusy) as refused:
            datalock.acquire(data, "controller")
        assert refused.value.holder == datalock.Holder(holder.pid, "another process")
        assert f"in use by another process (pid {holder.pid})" in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
