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

from tests.cluster import Cluster, Node, _running, wait_for
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


# -- a second controller, reset and up on a running node's data dir ----------------------------
def test_second_controller_on_a_running_data_dir_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    n1 = cluster.bootstrap("n1")
    assert n1.proc
    etcd = n1.etcd_pid()
    assert etcd
    before = _checksums(n1.data.root, "pki", "state")
    top = sorted(p.name for p in n1.data.root.iterdir())
    other = Node("n4", tmp_path)  # another name, address and ports
    other.config_file.write_text(yaml.safe_dump(other.config()))
    second = subprocess.Popen([sys.executable, "-m", "etcdward", "controller", "-c", str(other.config_file),
                               "--data-dir", str(n1.data.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        _, err = second.communicate(timeout=15)
    finally:
        if second.poll() is None:  # the unlocked code takes the data dir over; do not leave it running
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
    assert second.returncode == 1
    assert err.splitlines() == [f"etcdward controller: data dir {n1.data.root} is in use by etcdward controller "
                                f"(pid {n1.proc.pid}); stop that process first or use another --data-dir"], err
    assert n1.alive() and n1.etcd_pid() == etcd and _running(etcd)
    assert _checksums(n1.data.root, "pki", "state") == before
    assert sorted(p.name for p in n1.data.root.iterdir()) == top
    assert [m.name for m in n1.members()] == ["n1"]
    assert n1.etcdctl("member", "list").returncode == 0
    fds = " ".join(os.readlink(f) for f in Path(f"/proc/{etcd}/fd").iterdir() if f.is_symlink())
    assert "etcdward.lock" not in fds  # the etcd child does not hold (or keep) the lock


def test_reset_is_refused_while_the_controller_runs(cluster: Cluster, tmp_path: Path) -> None:
    n1 = cluster.bootstrap("n1")
    assert n1.proc
    before = _checksums(n1.data.root, "pki", "state")
    # Through a symlink and with --force: the lock is on the file, not on how the path is spelled
    # (a check of the processes' command lines misses this one and wipes a running node).
    link = tmp_path / "link"
    link.symlink_to(n1.data.root)
    p = n1.cli("reset", "--force", "--data-dir", str(link), check=False)
    assert p.returncode == 1 and f"(pid {n1.proc.pid})" in p.stderr, p.stderr
    assert n1.data.etcd_db.exists() and n1.data.identity_file.exists() and n1.data.etcd_pki.is_dir()
    p = n1.cli("reset", "--data-dir", str(n1.data.root), check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [f"data dir {n1.data.root} is in use by etcdward controller "
                                      f"(pid {n1.proc.pid}); stop that process first"], p.stderr
    assert n1.alive() and n1.is_ready()
    assert _checksums(n1.data.root, "pki", "state") == before
    assert n1.stop() == 0
    assert n1.cli("reset", "--force", "--data-dir", str(n1.data.root)).returncode == 0  # free once stopped
    assert not n1.data.state.exists() and n1.data.lock_file.exists()


def test_kill_9_of_a_controller_frees_the_lock_for_a_restart(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    assert n1.proc
    etcd = n1.etcd_pid()
    os.kill(n1.proc.pid, signal.SIGKILL)  # the controller only; its etcd dies by PDEATHSIG
    n1.proc.wait()
    wait_for(lambda: not _running(etcd or 0), 10, "etcd gone with its controller")
    assert datalock.holder(n1.data) is None
    n1.start()
    n1.wait_ready()
    assert n1.data.lock_file.read_text() == f"{n1.proc.pid} controller\n"
    assert "start decision: START" in n1.log()


def test_up_on_a_dir_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    node = DataDir(tmp_path / "n1")
    with datalock.acquire(node, "controller"):
        p = subprocess.run([sys.executable, "-m", "etcdward", "up", "--nodes", "1", "--once", "--dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [f"up: data dir {node.root} is in use by etcdward controller (pid {os.getpid()}); "
                                     "stop the `etcdward up` running there first or use another --dir"], p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["n1"]  # no config, token or log written
