#!/usr/bin/env python3
"""Backup benchmark: `etcdward backup` against `etcdctl snapshot save`, and the controller's memory
during a scheduled backup.

    .venv/bin/python -m bench.backup [--mb 110] [--runs 5] [--keep]

One controller on loopback (tests/cluster.py). Its etcd is filled with 1 MiB values (random hex:
about half compressible, like text) until etcd reports a db of at least --mb MB. Then, --runs
times, alternating which goes first, on the same cluster:

etcdward   `python -m etcdward backup --save-path DIR` (the whole command: Python start-up,
           the request to the running controller over its Unix socket (backup/handoff.py),
           which streams the snapshot into the archive while it is hashed (worker thread),
           fsyncs while it is read back and checked, renames, answers)
etcdctl    `etcdctl snapshot save FILE` (snapshot, fsync, rename)
in-process the same command with ETCDWARD_BACKUP_IN_PROCESS=1: the CLI takes the backup
           itself (what it does when no controller answers)

Its CPU column is the command's plus the controller's CPU while it ran (the controller does
the work), etcdctl's is its own.

and the ratio of the medians (target <= 1.2). For reference, the command's start-up alone
(`etcdward backup list` of an empty dir) is timed too.

Memory: the controller is restarted with spec.backup.interval 1h and the status record says
the last backup was taken 1h - 12 s ago, so its first scheduled backup starts ~12 s later,
once it has settled. Its VmRSS is sampled every 10 ms; growth = the peak while the backup runs
minus the peak of the 2 s before (target < 32 MiB: the snapshot streams through a temp file,
never held in memory). VmHWM before and after is printed as a cross-check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from etcdward.backup.handoff import IN_PROCESS
from etcdward.backup.report import read_status, success_entry
from etcdward.keys import BACKUP_STATUS
from tests.cluster import Cluster, Node

MiB = 1 << 20


def fill(n: Node, mb: int) -> int:
    """Put 1 MiB values until etcd's db is at least mb MB; returns the db size."""
    async def go() -> int:
        async with n.store(timeout=30) as st:
            i = 0
            while (size := (await st.status()).db_size) < mb * 1_000_000:
                await asyncio.gather(*(st.put(f"/bench/{i + j:06d}", os.urandom(MiB // 2).hex()) for j in range(4)))
                i += 4
            return size
    return asyncio.run(go())


def timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Wall seconds, and CPU seconds (user + sys) of the child processes it ran: on a shared
    machine the wall time follows the load, the CPU time much less."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    fn()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.monotonic() - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def run_etcdward(n: Node, out: Path) -> None:
    n.cli("backup", "--save-path", str(out), "--data-dir", str(n.data.root))
    for p in out.iterdir():
        p.unlink()


def run_in_process(n: Node, out: Path) -> None:
    os.environ[IN_PROCESS] = "1"
    try:
        run_etcdward(n, out)
    finally:
        del os.environ[IN_PROCESS]


def process_cpu(pid: int) -> float:
    """utime + stime of a running process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_etcdctl(n: Node, out: Path) -> None:
    p = n.etcdctl("snapshot", "save", str(out / "snap.db"))
    assert p.returncode == 0, p.stderr
    (out / "snap.db").unlink()


def proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def memory_during_scheduled_backup(n: Node, dest: Path) -> dict[str, float]:
    async def due_soon() -> None:
        async with n.store() as st:
            entry = success_entry(time.time() - 3600 + 12, "bench", "bench", "-", 0.0, 0)
            await st.put(BACKUP_STATUS, json.dumps({"lastSuccess": entry, "lastFailure": None}))

    async def last_success() -> float:
        async with n.store() as st:
            return float(((await read_status(st)).get("lastSuccess") or {}).get("unix") or 0)

    asyncio.run(due_soon())  # before the restart: the new leader reads it when it takes over
    assert n.stop() == 0
    n.extra_config = {"spec": {"backup": {"interval": "1h", "keep": 2, "dir": str(dest)}}}
    n.start()
    n.wait_ready(60)
    before = asyncio.run(last_success())
    assert n.proc is not None
    pid = n.proc.pid
    samples: list[tuple[float, int, bool]] = []  # (t, VmRSS kB, a backup temp file exists)
    end = time.monotonic() + 120
    done = False
    while time.monotonic() < end and not done:
        busy = any(p.name.startswith(".") for p in dest.iterdir()) if dest.is_dir() else False
        samples.append((time.monotonic(), proc_kb(pid, "VmRSS"), busy))
        if not busy and any(s[2] for s in samples):
            done = asyncio.run(last_success()) > before
        time.sleep(0.01)
    assert done, "the scheduled backup did not finish within 120 s"
    start = next(t for t, _, b in samples if b)
    baseline = max(r for t, r, _ in samples if start - 2 <= t < start)
    peak = max(r for t, r, b in samples if t >= start)
    status = json.loads(n.cli("status", "-o", "json", "--data-dir", str(n.data.root)).stdout)["backup"]
    return {"baseline_mib": baseline / 1024, "peak_mib": peak / 1024, "growth_mib": (peak - baseline) / 1024,
            "hwm_mib": proc_kb(pid, "VmHWM") / 1024, "duration_s": status["lastSuccess"]["durationSeconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=110, help="fill etcd's db to at least this many MB")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="etcdward-backup-bench-"))
    cluster = Cluster(root)
    try:
        n1 = cluster.bootstrap("n1")
        size = fill(n1, args.mb)
        print(f"db size {size / 1e6:.1f} MB", file=sys.stderr)
        out = root / "out"
        out.mkdir()
        empty = root / "empty"
        empty.mkdir()
        times: dict[str, list[float]] = {"etcdward": [], "etcdctl": [], "in-process": [], "start-up": []}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        ratios: list[float] = []  # per run: both commands under about the same load
        for i in range(args.runs):
            order = [("etcdward", run_etcdward), ("etcdctl", run_etcdctl), ("in-process", run_in_process)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                before = process_cpu(n1.proc.pid)
                wall, used = timed(lambda: fn(n1, out))
                times[name].append(wall)
                cpu[name].append(used + (process_cpu(n1.proc.pid) - before if name == "etcdward" else 0))
            wall, used = timed(lambda: n1.cli("backup", "list", "--dir", str(empty)))
            times["start-up"].append(wall)
            cpu["start-up"].append(used)
            ratios.append(times["etcdward"][-1] / times["etcdctl"][-1])
            print(f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
                  + f", ratio {ratios[-1]:.2f}, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        mem = memory_during_scheduled_backup(n1, root / "scheduled")
        print(f"backup of a {size / 1e6:.0f} MB db, {args.runs} runs alternating, one controller on loopback:")
        for k, v in times.items():
            print(f"  {k:9s} median {med[k]:6.2f}s  min {min(v):6.2f}s  max {max(v):6.2f}s  "
                  f"CPU median {statistics.median(cpu[k]):5.2f}s")
        print(f"  ratio etcdward / etcdctl (medians): {med['etcdward'] / med['etcdctl']:.2f}; per run: "
              f"median {statistics.median(ratios):.2f}, min {min(ratios):.2f} (target <= 1.2)")
        print(f"  without a controller to hand it to (in-process / etcdctl, medians): "
              f"{med['in-process'] / med['etcdctl']:.2f}")
        print(f"  scheduled backup inside the controller: {mem['duration_s']:.2f}s "
              f"({mem['duration_s'] / med['etcdctl']:.2f}x etcdctl's median)")
        print(f"  controller VmRSS: {mem['baseline_mib']:.1f} MiB before, peak {mem['peak_mib']:.1f} MiB during, "
              f"growth {mem['growth_mib']:.1f} MiB (target < 32); VmHWM {mem['hwm_mib']:.1f} MiB")
    finally:
        cluster.teardown()
        if args.keep:
            print(f"data and logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
