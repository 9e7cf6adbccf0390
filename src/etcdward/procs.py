"""Start and stop one `etcdward controller` process and find its etcd.

`etcdward up` (playground.PlayNode), the tests (tests/cluster.Node, tests/scenarios/host.Host)
and the formation benchmark (bench/bench_procs.Node) all run controllers as separate processes,
as in production; `ControllerProcess` is what they share:

- argv: an optional wrapper prefix (`unshare ...`, `nsenter ...`), the launcher
  (`python -m etcdward` by default), `controller [TOKEN] -c CONFIG --data-dir DIR [--token-file F]`;
- start: the config file written, stdout and stderr appended to one log file, a new session (so
  a kill -9 of its process group reaches the controller and nothing of the caller);
- stop: SIGTERM, then kill -9 after a timeout; kill -9 of the controller AND its etcd, as a
  machine crash would (the etcd runs in its own session; its pid comes from state/etcd.pid and
  is trusted only while /proc shows that pid running etcd on this data dir).

Subclasses are dataclasses or plain classes that set `name` and `root` (default layout:
<root>/<name>/ data dir, <root>/<name>.yaml, <root>/<name><log_suffix>) or override the three
paths, and keep `proc`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .paths import DataDir


# -- addresses and ports ---------------------------------------------------------------------

def loopback_address(second_octet: int, n: int, per_block: int = 200) -> str:
    """The n-th address a process hands out in 127.<second_octet>.x.y. Each pid starts in its own
    block of `per_block` addresses, so parallel test runs (or a test run and a benchmark, which
    use different second octets) do not share addresses; y starts at 10."""
    return f"127.{second_octet}.{(os.getpid() + n // per_block) % 250 + 1}.{n % per_block + 10}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- /proc -------------------------------------------------------------------------------------

def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (the state first, then the ppid
    ...), None if gone. Split after the last ')': a command name may contain spaces and ')'."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields or None


def proc_state(pid: int) -> str | None:
    """One-letter state of pid ('R', 'S', 'Z', ...), None if gone."""
    fields = proc_stat(pid)
    return fields[0] if fields else None


def running(pid: int) -> bool:
    """Alive and not a zombie (a late-reaping PID 1 keeps killed orphans as Z)."""
    st = proc_state(pid)
    return st is not None and st != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while running(pid) and time.monotonic() < end:
        time.sleep(0.05)


def deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Merge src into dst, nested dicts key by key (extra config over a node's base config)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = v


# -- the controller process ------------------------------------------------------------------

class ControllerProcess:
    """One controller process of a node (see the module docstring); `proc` is None until started."""

    name: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    wrapper: Sequence[str] = ()  # argv prefix, e.g. ["unshare", "--uts", ...]
    env: Mapping[str, str] = {}  # over os.environ for the controller (read only here)
    launcher: Sequence[str] = (sys.executable, "-m", "etcdward")
    log_suffix = ".log"
    stop_timeout = 30.0

    @property
    def data(self) -> DataDir:
        return DataDir(self.root / self.name)

    @property
    def config_file(self) -> Path:
        return self.root / f"{self.name}.yaml"

    @property
    def log_file(self) -> Path:
        return self.root / f"{self.name}{self.log_suffix}"

    def write_config(self, cfg: dict[str, Any], sort_keys: bool = True) -> None:
        self.config_file.write_text(yaml.safe_dump(cfg, sort_keys=sort_keys))

    def controller_argv(self, token: str | None = None, *args: str, token_file: Path | None = None) -> list[str]:
        argv = [*self.wrapper, *self.launcher, "controller", *([token] if token else []),
                "-c", str(self.config_file), "--data-dir", str(self.data.root), *args]
        if token_file:
            argv += ["--token-file", str(token_file)]
        return argv

    def launch(self, argv: list[str], banner: str = "", env: Mapping[str, str] | None = None) -> None:
        """Start argv (from controller_argv) with its output appended to the log file, after
        `banner` (a line saying which start this is, so a log of several starts reads well)."""
        with self.log_file.open("ab") as log:
            if banner:
                log.write(banner.encode())
                log.flush()
            self.proc = self.popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, **self.env, **(env or {})})

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """How the process is started; overridden to start it inside a namespace node or to
        track it for a clean-up."""
        return subprocess.Popen(argv, **kw)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def etcd_pid(self) -> int | None:
        """PID of the etcd running on this data dir (from state/etcd.pid), if it runs. The
        cmdline check keeps a reused pid from being taken (and killed) for ours."""
        try:
            pid = int((self.data.state / "etcd.pid").read_text())
        except (OSError, ValueError):
            return None
        if running(pid) and f"--data-dir={self.data.etcd}" in cmdline(pid):
            return pid
        return None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM and wait; a controller still running after `timeout` is killed with -9
        (after stop_timed_out(), which subclasses use to report it)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.stop_timed_out(self.stop_timeout if timeout is None else timeout)
                self.kill9()
        return self.proc.returncode

    def stop_timed_out(self, timeout: float) -> None:
        return None

    def kill_controller(self) -> None:
        """kill -9 of the controller's process group (its session) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kill9(self) -> None:
        """kill -9 of the controller AND its etcd, as a machine crash would."""
        etcd = self.etcd_pid()
        self.kill_controller()
        if etcd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(etcd, signal.SIGKILL)
            wait_gone(etcd)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""
