"""The systemd unit that runs `etcdward controller` as a service (`etcdward install controller`,
`etcdward uninstall`), after `k0s install controller`: one unit file whose ExecStart is this
installation's etcdward with the flags given, checked before anything is written.

Choices the unit makes, and why:
- Restart=on-failure: a controller exits 0 only when stopped or when its member was removed from
  the cluster; restarting a removed member would only fail again, every RestartSec.
- KillMode=mixed: `systemctl stop` sends SIGTERM to the controller alone, which stops etcd in
  order (SIGTERM, SIGKILL after supervisor.STOP_GRACE); whatever is left in the unit's cgroup
  once it has exited is killed with SIGKILL. control-group would SIGTERM etcd at the same moment,
  and the supervisor would take that for a crash and restart it.
- TimeoutStopSec: longer than the controller's own grace for etcd, so systemd never cuts a clean
  stop short.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import config as cfgmod
from . import datalock
from .errors import Permanent
from .paths import DEFAULT_DATA_DIR, DataDir, atomic_write
from .supervisor import STOP_GRACE

UNIT_NAME = "etcdward.service"
UNIT_DIR = Path("/etc/systemd/system")
WANTED_BY = "multi-user.target"
RESTART_SEC = 5
STOP_TIMEOUT = int(STOP_GRACE) + 20  # etcd's grace, then the controller's own clean-up, with room
LIMIT_NOFILE = 1048576  # etcd keeps a descriptor per peer/client connection and per WAL/snap file


class UnitError(Permanent):
    """Bad input for the unit or a unit that must not be touched; the message names the flag."""


@dataclass(frozen=True)
class ServiceSpec:
    """What the unit runs: the etcdward command and the controller's flags."""
    command: tuple[str, ...]  # absolute etcdward executable, or (python, "-m", "etcdward")
    data_dir: Path
    config_file: Path | None = None
    token_file: Path | None = None
    log_format: str = "text"

    def argv(self) -> list[str]:
        argv = [*self.command, "controller"]
        if self.config_file:
            argv += ["-c", str(self.config_file)]
        argv += ["--data-dir", str(self.data_dir)]
        if self.token_file:
            argv += ["--token-file", str(self.token_file)]
        if self.log_format != "text":
            argv += ["--log-format", self.log_format]
        return argv


def etcdward_command() -> tuple[str, ...]:
    """How to run this installation of etcdward by absolute path: the entry point being run,
    else the one next to this Python (a venv's bin/, whether or not it is on PATH), else the
    one on PATH, else this Python with -m."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "etcdward" and argv0.is_file():
        return (str(argv0.absolute()),)
    # not resolved: a venv's python is a symlink out of the venv, its bin/ is what we want
    sibling = Path(sys.executable).absolute().parent / "etcdward"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return (str(sibling),)
    found = shutil.which("etcdward")
    if found:
        return (str(Path(found).absolute()),)
    return (str(Path(sys.executable).absolute()), "-m", "etcdward")


def _plain_path(flag: str, path: Path) -> None:
    if any(ord(c) < 32 or c == "\x7f" for c in str(path)):
        raise UnitError(f"{flag} {str(path)!r}: a path with control characters cannot go into a unit file")


def check_spec(config_file: Path | None, data_dir: Path, token_file: Path | None, log_format: str) -> ServiceSpec:
    """The unit's flags, checked as the controller will see them at boot: every path absolute,
    the config file present and valid, the token file present. Raises UnitError naming the flag."""
    if not data_dir.is_absolute():
        raise UnitError(f"--data-dir {data_dir}: must be an absolute path (the service does not run in this "
                        f"directory); did you mean --data-dir {data_dir.absolute()}?")
    _plain_path("--data-dir", data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise UnitError(f"--data-dir {data_dir}: exists and is not a directory")
    if config_file is not None:
        _plain_path("-c/--config", config_file)
        if not config_file.is_file():
            raise UnitError(f"-c/--config {config_file}: no such file")
        try:
            cfgmod.load_effective(config_file)
        except cfgmod.ConfigError as e:
            raise UnitError(f"-c/--config: {e}") from None
        config_file = config_file.absolute()
    if token_file is not None:
        _plain_path("--token-file", token_file)
        if not token_file.is_file():
            raise UnitError(f"--token-file {token_file}: no such file")
        token_file = token_file.absolute()
    return ServiceSpec(command=etcdward_command(), data_dir=data_dir, config_file=config_file,
                       token_file=token_file, log_format=log_format)


def systemd_quote(arg: str) -> str:
    """One ExecStart word: % and $ escaped (systemd expands specifiers and variables), quoted when
    it holds anything but plain path characters."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%$+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(spec: ServiceSpec) -> str:
    exec_start = " ".join(systemd_quote(a) for a in spec.argv())
    return f"""\
# Written by `etcdward install controller`; `etcdward uninstall` removes it.
[Unit]
Description=etcdward controller (etcd control-plane membership manager)
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
ExecStart={exec_start}
Restart=on-failure
RestartSec={RESTART_SEC}s
# SIGTERM to the controller only: it stops etcd itself ({STOP_GRACE:.0f}s grace, then SIGKILL);
# anything left in the cgroup after the controller exits gets SIGKILL.
KillMode=mixed
TimeoutStopSec={STOP_TIMEOUT}s
LimitNOFILE={LIMIT_NOFILE}
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy={WANTED_BY}
"""


def exec_start_argv(unit_text: str) -> list[str]:
    """The ExecStart words of a unit this module wrote (the inverse of systemd_quote)."""
    for line in unit_text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line.removeprefix("ExecStart="))
            return [w.replace("%%", "%").replace("$$", "$") for w in words]
    return []


def unit_data_dir(unit_text: str) -> Path:
    argv = exec_start_argv(unit_text)
    for flag, value in zip(argv, argv[1:]):
        if flag == "--data-dir":
            return Path(value)
    return DEFAULT_DATA_DIR


def write_unit(path: Path, text: str, force: bool) -> bool:
    """Write the unit atomically (0644); False when it is already exactly this. A different
    unit is replaced only with force."""
    try:
        current = path.read_text(errors="replace")
    except FileNotFoundError:
        current = None
    if current == text:
        return False
    if current is not None and not force:
        raise UnitError(f"{path} already exists with different content; `etcdward install controller --dry-run` "
                        "shows the new unit; pass --force to replace it, or run `etcdward uninstall` first")
    atomic_write(path, text, mode=0o644)
    return True


def systemd_is_init() -> bool:
    """Is systemd running this machine (pid 1), so that systemctl can be asked?"""
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd" and shutil.which("systemctl") is not None
    except OSError:
        return False


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)


def check_not_running(unit_text: str) -> None:
    """Refuse while the service runs: systemd's view when it is init, and in any case the
    data-dir lock of the controller the unit starts (it may run without systemd)."""
    if systemd_is_init():
        state = systemctl("is-active", UNIT_NAME).stdout.strip()
        if state in ("active", "activating", "deactivating", "reloading"):
            raise UnitError(f"{UNIT_NAME} is {state}; stop it first: systemctl disable --now {UNIT_NAME}")
    data = DataDir.at(unit_data_dir(unit_text))
    holder = datalock.holder(data)
    if holder is not None:
        raise UnitError(f"a controller is running on the unit's data dir {data.root} ({holder}); stop it first")


def remove_unit(unit_dir: Path) -> list[Path]:
    """Remove the unit and its enablement link (what `systemctl disable` would remove); the
    paths removed."""
    removed = []
    for path in (unit_dir / f"{WANTED_BY}.wants" / UNIT_NAME, unit_dir / UNIT_NAME):
        if path.is_symlink() or path.exists():
            path.unlink()
            removed.append(path)
    return removed
