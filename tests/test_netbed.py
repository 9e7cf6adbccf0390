"""Self-test of the namespace test bed (tests/netbed.py).  Needs root and the bed's tools (tests/prereqs.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import netbed
from tests.netbed import NetBed
from tests.prereqs import needs

pytestmark = [pytest.mark.root, needs("netbed")]

PY = [sys.executable, "-I", "-S", "-c"]  # -S: no site import, faster start inside nodes
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except (socket.timeout, TimeoutError):
    sys.exit(3)
except OSError as e:
    print(e, file=sys.stderr)
    sys.exit(4)
"""
PORT = 7070
# Child script for the crash / SIGTERM tests: builds a bed, starts a sleeper, reports, waits.
CHILD = """
import sys, time
from tests import netbed
if sys.argv[1] == "sigterm":
    netbed.install_sigterm_cleanup()
bed = netbed.NetBed(1)
p = bed.popen("n1", ["sleep", "300"])
print(bed.prefix, p.pid, flush=True)
time.sleep(300)
"""


def connect(bed: NetBed, src: str, dst: str, timeout: float = 0.5) -> str:
    """'ok', 'timeout' or 'error' for a TCP connect from node src to dst:PORT."""
    res = bed.run(src, PY + [CONNECT, bed.ip(dst), str(PORT), str(timeout)],
                  capture_output=True, text=True, timeout=10)
    return {0: "ok", 3: "timeout"}.get(res.returncode, f"error: {res.stderr.strip()}")


def listen(bed: NetBed, node: str) -> subprocess.Popen:
    proc = bed.popen(node, PY + [LISTENER, bed.ip(node), str(PORT)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def out(bed: NetBed, node: str, *argv: str) -> str:
    return bed.run(node, list(argv), capture_output=True, text=True, check=True, timeout=10).stdout


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a late-reaping init (testbed.md pitfall 1)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def assert_gone(prefix: str, ns_ids=frozenset(), procs=()) -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed
    assert not (netbed.STATE_ROOT / prefix).exists()
    assert str(netbed.STATE_ROOT / prefix) not in open("/proc/self/mountinfo").read()
    assert netbed._pids_in(set(ns_ids)) == []
    for proc in procs:
        assert proc.returncode is not None  # killed and reaped, no zombie


def test_bed_end_to_end(tmp_path):
    root_hosts, root_name = Path("/etc/hosts").read_text(), os.uname().nodename
    bed = NetBed(3, workdir=tmp_path)
    try:
        assert bed.nodes == ["n1", "n2", "n3"] and bed.prefix.startswith("ew")
        assert bed.ip("n2") == f"{bed.net}.12" and bed.ip("ctl") == f"{bed.net}.2"
        for node in bed.nodes:  # own hostname, own hosts/resolv.conf, FQDN from hosts
            assert out(bed, node, "hostname").strip() == node
            assert out(bed, node, "hostname", "-f").strip() == f"{node}.cluster.test"
            assert out(bed, node, "cat", "/etc/hosts") == bed.default_hosts()
            assert out(bed, node, "cat", "/etc/resolv.conf") == "nameserver 127.0.0.1\n"
        assert f"{bed.ip('n3')}\tn3.cluster.test\tn3" in bed.default_hosts()
        assert out(bed, "n1", "pwd").strip() == os.getcwd()  # cwd survives entering the mount ns

        l1, l2 = listen(bed, "n1"), listen(bed, "n2")  # same port in two nodes: no clash
        assert l2.pid in bed.pids("n2") and l2.pid not in bed.pids("n1")
        assert connect(bed, "n1", "n2") == "ok"
        assert connect(bed, "ctl", "n1") == "ok"

        bed.partition("n1")
        assert connect(bed, "n1", "n2") == "timeout"
        assert connect(bed, "n2", "n1") == "timeout"
        assert connect(bed, "ctl", "n1") == "ok"  # the observer keeps access
        bed.heal("n1")
        assert connect(bed, "n1", "n2") == "ok"
        bed.heal("n1")  # healing twice is harmless

        bed.set_hostname("n1", "n1.cluster.test")
        assert out(bed, "n1", "hostname").strip() == "n1.cluster.test"
        assert out(bed, "n2", "hostname").strip() == "n2"
        bed.set_hostname("n1", "n1")
        assert out(bed, "n1", "hostname").strip() == "n1"

        hosts_file = bed.state_dir / "nodes" / "n1" / "hosts"
        ino = hosts_file.stat().st_ino
        bed.write_hosts("n1", f"127.0.0.1\tlocalhost\n{bed.ip('n1')}\tn1\n")
        assert out(bed, "n1", "cat", "/etc/hosts").endswith("\tn1\n")
        assert hosts_file.stat().st_ino == ino
        assert out(bed, "n1", "hostname", "-f").strip() == "n1"  # short-only hosts line
        assert out(bed, "n2", "cat", "/etc/hosts") == bed.default_hosts()

        bed.kill9(l2.pid)
        assert l2.returncode == -signal.SIGKILL and l2.pid not in bed.pids("n2")
        with pytest.raises(ValueError):
            bed.kill9(os.getpid())  # never kills outside the bed
        ns_ids = bed._ns_ids()
        assert netbed._pids_in(ns_ids) == [l1.pid]
    finally:
        bed.close()
    assert_gone(bed.prefix, ns_ids, [l1, l2])
    assert l1.returncode == -signal.SIGKILL
    bed.close()  # idempotent
    assert Path("/etc/hosts").read_text() == root_hosts and os.uname().nodename == root_name


def test_exception_inside_with_cleans_up(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with NetBed(1, workdir=tmp_path) as bed:
            sleeper = bed.popen("n1", ["sleep", "300"])
            ns_ids = bed._ns_ids()
            raise RuntimeError("boom")
    assert sleeper.returncode == -signal.SIGKILL
    assert_gone(bed.prefix, ns_ids)
    assert bed not in netbed._LIVE


def test_failure_half_way_cleans_up(tmp_path, monkeypatch):
    made = []
    original = NetBed._add_node

    def flaky(self, node, hosts):
        if node == "n2":
            made.append(self.prefix)
            raise netbed.NetBedError("injected")
        original(self, node, hosts)

    monkeypatch.setattr(NetBed, "_add_node", flaky)
    with pytest.raises(netbed.NetBedError, match="injected"):
        NetBed(3, workdir=tmp_path)
    assert_gone(made[0])


def _child(mode: str) -> tuple[subprocess.Popen, str, int]:
    # the repo root on the child's PYTHONPATH, so that it imports tests.netbed as we do
    repo = str(Path(netbed.__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": pythonpath})
    prefix, pid = child.stdout.readline().split()
    return child, prefix, int(pid)


def test_sigterm_handler_cleans_up():
    child, prefix, sleeper = _child("sigterm")
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == -signal.SIGTERM  # cleaned up, then died by SIGTERM
    assert_gone(prefix)
    assert dead(sleeper)


def test_cleanup_stale_only_removes_dead_owners(tmp_path):
    child, crashed, sleeper = _child("crash")
    with NetBed(1, workdir=tmp_path) as live:
        child.kill()  # SIGKILL: no atexit, the bed and its sleeper are left behind
        child.wait(timeout=10)
        assert crashed in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        removed = netbed.cleanup_stale("ew")
        assert crashed in removed and live.prefix not in removed
        assert_gone(crashed)
        assert dead(sleeper)
        assert out(live, "n1", "hostname").strip() == "n1"  # the live bed is untouched
        assert netbed.cleanup_stale(live.prefix) == []
    assert_gone(live.prefix)
