"""The namespace bed's low-level helpers, shared by NetBed.close() and cleanup_stale(): find a
bed's namespaces and the processes inside them, and remove everything a bed may have created.
Split from netbed.py so that each stays short; plain module (no pytest import)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path


class NetBedError(RuntimeError):
    pass


def _cmd(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise NetBedError(f"{' '.join(argv)!r} failed (rc {res.returncode}): {res.stderr.strip()}")
    return res


def _netns_names(prefix: str) -> list[str]:
    """Existing netns belonging to bed `prefix` (exact naming scheme only)."""
    pattern = re.compile(rf"{re.escape(prefix)}-(hub|ctl|n\d+)")
    out = _cmd(["ip", "netns", "list"], check=False).stdout
    return [w[0] for w in (line.split() for line in out.splitlines())
            if w and pattern.fullmatch(w[0])]


def _mountpoints() -> set[str]:
    """Mount points of our mount ns (os.path.ismount misses same-fs bind mounts)."""
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            raw = line.split()[4]
            points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw))
    return points


def _ns_id(path) -> tuple[int, int] | None:
    """Identity of a namespace file or /proc/PID/ns link; None if gone (zombies have none)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _ns_ids(paths) -> set[tuple[int, int]]:
    return {i for p in paths if (i := _ns_id(p)) is not None}


def _pids_in(ids: set[tuple[int, int]]) -> list[int]:
    """Live PIDs whose net, uts or mnt namespace is one of `ids` (own process excluded)."""
    me = str(os.getpid())
    return [int(e) for e in os.listdir("/proc") if ids and e.isdigit() and e != me
            and any(_ns_id(f"/proc/{e}/ns/{k}") in ids for k in ("net", "uts", "mnt"))]


def _proc_start(pid: int) -> str | None:
    """Start time of `pid` (field 22 of /proc/PID/stat) to detect PID reuse; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _bed_namespaces(prefix: str, state_dir: Path) -> tuple[list[str], list[str], set]:
    """(netns names, mounted uts/mnt ns files, their (dev, ino) ids) of bed `prefix`."""
    names = _netns_names(prefix)
    mounted = _mountpoints()
    ns_files = [str(f) for f in sorted((state_dir / "ns").glob("*")) if str(f) in mounted]
    return names, ns_files, _ns_ids([f"/run/netns/{n}" for n in names] + ns_files)


def _teardown(prefix: str, state_dir: Path, procs=()) -> None:
    """Remove everything bed `prefix` may have created; every step tolerates 'not there'."""
    names, ns_files, ids = _bed_namespaces(prefix, state_dir)
    # 1. kill -9 everything inside (also tracked children that somehow left) until none remain
    deadline = time.monotonic() + 5
    while True:
        for p in procs:
            if p.poll() is None:
                p.kill()
        pids = _pids_in(ids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not pids or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    # 2. reap our own children so they do not linger as zombies (testbed.md pitfall 1)
    for p in procs:
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
    # 3. namespaces die with their last reference: ns file mounts, then /run/netns entries
    for f in ns_files:
        _cmd(["umount", "-l", f], check=False)
    for name in names:
        _cmd(["ip", "netns", "del", name], check=False)
    if str(state_dir / "ns") in _mountpoints():
        _cmd(["umount", "-l", str(state_dir / "ns")], check=False)
    shutil.rmtree(state_dir, ignore_errors=True)
