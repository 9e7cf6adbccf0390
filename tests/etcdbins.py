"""The etcd binaries of the supported versions, wherever they are on this machine:
$ETCDWARD_ETCD_<x_y_z>, $ETCDWARD_ETCD_BIN, `etcd` on PATH, or scripts/etcd.sh's cache."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITES = ("bookworm", "trixie", "testing", "sid")


def version_of(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("etcd Version:").strip() if first.startswith("etcd Version:") else None


@functools.cache
def etcd_of(version: str) -> str | None:
    cache = Path(os.environ.get("ETCD_CACHE") or REPO / ".etcd-cache")
    candidates = [os.environ.get("ETCDWARD_ETCD_" + version.replace(".", "_")), os.environ.get("ETCDWARD_ETCD_BIN"),
                  shutil.which("etcd"), *(str(cache / s / "root/usr/bin/etcd") for s in SUITES)]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK) and version_of(c) == version:
            return c
    return None


def etcdctl_next_to(etcd: str) -> str:
    ctl = Path(etcd).with_name("etcdctl")
    return str(ctl) if ctl.exists() else (shutil.which("etcdctl") or "/usr/bin/etcdctl")
