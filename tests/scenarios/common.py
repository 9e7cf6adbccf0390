"""Constants and small helpers shared by the scenario harness modules (no pytest import)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etcdward.procs import cmdline, proc_stat

from .. import netbed

REPO = Path(__file__).resolve().parents[2]
OUTPUT_ROOT = REPO / "test-output" / "scenarios"
CTLWRAP = Path(__file__).resolve().parent / "ctlwrap.py"  # python -m etcdward + SIGUSR1 stack dumps
ETCDCTL = os.environ.get("ETCDWARD_ETCDCTL") or shutil.which("etcdctl") or "/usr/bin/etcdctl"
WRITES = "/scenario/writes/"
LEASE_TTL = 4
BOOTSTRAP_LINE = "start decision: BOOTSTRAP"


class ScenarioError(AssertionError):
    pass


# A controller that hung on SIGTERM because KeptLease.close() waited for a keep-alive task that
# had absorbed its cancellation (tests/test_tasks.py; fixed in the product) used to be reported
# as a known bug; now any stop hang fails the scenario.  True restores the tolerance.
TOLERATE_LEASE_HANG = False

BED_PREFIX = "sc"  # scenario beds: sc<6 hex>; cleanup_stale_beds() only touches these


def etcd_binary() -> str | None:
    return os.environ.get("ETCDWARD_ETCD_BIN") or shutil.which("etcd")


def netbed_ok() -> tuple[bool, str]:
    """(True, "") when scenarios can run here (conftest then cleans up stale beds), else (False,
    why).  Whether a scenario runs is decided by its needs() marker (tests/prereqs.py)."""
    ok, why = netbed.netbed_available()
    if not ok:
        return False, f"network-namespace bed unavailable: {why}"
    if not etcd_binary():
        return False, "no etcd binary (apt-get install etcd-server, or set ETCDWARD_ETCD_BIN)"
    if not os.access(ETCDCTL, os.X_OK):
        return False, f"no etcdctl at {ETCDCTL} (apt-get install etcd-client, or set ETCDWARD_ETCDCTL)"
    return True, ""


# ---- small process helpers (over etcdward.procs) -------------------------------------------

def ppid_of(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[1]) if fields else None


def is_etcd(pid: int) -> bool:
    argv = cmdline(pid)
    return bool(argv) and os.path.basename(argv[0]) == "etcd"


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.3,
               detail: Callable[[], str] | None = None) -> Any:
    """Poll cond() until truthy; ScenarioError with the last error/detail on timeout."""
    end = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (ScenarioError, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
            last = e
        if time.monotonic() >= end:
            extra = ""
            if detail:
                try:
                    extra = "\n" + detail()
                except Exception as e:  # diagnostics must not hide the timeout
                    extra = f"\n(detail failed: {e})"
            raise ScenarioError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last}){extra}")
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str] | None:
    return p if p.returncode == 0 else None


OWNER = ".owner"  # {"pid", "start"} of the process whose run uses the folder


def _proc_start(pid: int) -> str | None:
    fields = proc_stat(pid)
    return fields[19] if fields else None


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120]

