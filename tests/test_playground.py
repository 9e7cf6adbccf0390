"""`etcdward up`, the README's first command: a cluster forms, is verified and stops cleanly; on a
terminal it draws the live view and Ctrl-C stops every controller."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from etcdward.procs import cmdline

from tests.prereqs import needs
from tests.test_bad_input import etcdward


@needs("etcd")
def test_up_once_forms_verifies_and_stops(tmp_path: Path) -> None:
    p = etcdward("up", "--nodes", "2", "--once", "--dir", str(tmp_path / "up"), timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "cluster of 2 verified; stopping" in p.stderr
    assert "stopped 2 controller(s); data and logs are kept in" in p.stderr
    assert "n1" in p.stdout and "n2" in p.stdout
    again = etcdward("up", "--nodes", "2", "--once", "--dir", str(tmp_path / "up"), timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]  # the same dir restarts the existing members


def pids_using(d: Path) -> list[int]:
    """Processes whose command line names d (the controllers and their etcds)."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != os.getpid()
            and any(str(d) in a for a in cmdline(int(p.name)))]


def read_until(fd: int, proc: subprocess.Popen[bytes], done: Callable[[str], bool], timeout: float) -> str:
    """What the process drew on the terminal (escape sequences removed) until done(it) or exit."""
    raw, end = b"", time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                raw += os.read(fd, 65536)
            except OSError:  # the other side closed
                break
        shown = ANSI.sub("", raw.decode(errors="replace"))
        if done(shown):
            return shown
    return ANSI.sub("", raw.decode(errors="replace"))


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@needs("etcd")
def test_up_on_a_terminal_draws_the_live_view_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    root = tmp_path / "up"
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "etcdward", "up", "--dir", str(root)], stdin=subprocess.DEVNULL,
                            stdout=secondary, stderr=subprocess.PIPE,
                            env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")})
    os.close(secondary)
    try:
        def formed(shown: str) -> bool:  # the last frame: 3 voters, the records caught up
            last = shown.rsplit("etcdward up · cluster", 1)[-1]
            return " 3 voters, 0 learners" in last and "records: 3, in sync" in last

        shown = read_until(primary, proc, formed, timeout=150)
        assert formed(shown), shown[-3000:]
        last = shown.rsplit("etcdward up · cluster", 1)[-1]
        assert last.count("promoted") == 2 and "reconciler leader n" in last, last
        proc.send_signal(signal.SIGINT)  # Ctrl-C (the controllers run in their own sessions)
        shown = read_until(primary, proc, lambda _: False, timeout=60)
        assert proc.wait(10) == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        assert "Traceback" not in shown and (proc.stderr is None or not proc.stderr.read().strip())
        final = shown.rsplit("etcdward up · cluster", 1)[-1]
        assert final.count("exited (code 0)") == 3 and "every controller has stopped" in final, shown[-3000:]
        assert pids_using(root) == []
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids_using(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
