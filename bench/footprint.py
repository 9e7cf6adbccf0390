"""Footprint benchmark: what 3 idle controllers cost, against a bare etcd cluster in the same window.

    .venv/bin/python -m bench.footprint [--idle 60] [--settle 15] [--runs 1] [--keep]

Per run, on the same machine at the same time:

etcdward   3 real controllers with the default config (formed as in bench/formation.py: n1
           bootstraps, n2 and n3 join with one token).
bare       3 etcds with the same binary and flags (etcd_args), formed by the scripted etcdctl
           sequence of bench/formation.py (learner add, start, promote), no controller.

After both are formed, `--settle` seconds pass (the formation's own work ends, etcd's first
compaction and snapshot checks pass), then CPU (utime+stime from /proc/<pid>/stat) of every
process is read, `--idle` seconds later again; the difference over the wall time is the CPU
in % of one core. RSS is VmRSS at the end. Both clusters idle in the same window, so the
machine's load hits both alike: compare `etcd with controllers / bare etcd`, not seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from etcdward.supervisor import find_etcd

from .bench_procs import _etcd_pids_under, cpu_seconds, kill_all, roots
from .formation import Floor, run_etcdward

TARGET_RSS_MIB = 60.0
TARGET_CPU = 0.3  # % of one core, per controller
TARGET_ETCD_EXCESS = 25.0  # % over the bare cluster's etcds


@dataclass
class Run:
    controllers: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (CPU %, RSS MiB)
    leader: str = ""
    etcd: dict[str, float] = field(default_factory=dict)  # name -> CPU %, etcdward's etcds
    bare: dict[str, float] = field(default_factory=dict)  # name -> CPU %, the bare cluster's etcds

    @property
    def excess(self) -> float:
        """How much more CPU the etcds under controllers use than the bare ones, in %."""
        bare = sum(self.bare.values())
        return (sum(self.etcd.values()) / bare - 1) * 100 if bare else float("nan")


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def controller_pids(root: Path) -> dict[str, int]:
    """name -> pid of each `etcdward controller` whose data dir is under root."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "controller" in argv and "--data-dir" in argv:
            data = Path(argv[argv.index("--data-dir") + 1])
            if data.parent == root:
                out[data.name] = int(d.name)
    return out


def etcd_name(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return next((a.split("=", 1)[1] for a in argv if a.startswith("--name=")), str(pid))


def reconciler_leader(root: Path) -> str:
    for log in sorted(root.glob("*.controller.log")):
        if "is now the reconciler leader" in log.read_text(errors="replace"):
            return log.name.split(".")[0]
    return ""


def measure(pids: dict[str, int], idle: float) -> dict[str, float]:
    """CPU of each process over `idle` seconds, in % of one core."""
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(idle)
    wall = time.monotonic() - t0
    return {k: (cpu_seconds(p) - before[k]) / wall * 100 for k, p in pids.items()}


def one_run(base: Path, etcd: str, idle: float, settle: float) -> Run:
    ew = asyncio.run(run_etcdward(3, base))
    assert ew.root is not None
    floor = Floor(3, base, etcd)
    floor.run()
    ctl = controller_pids(ew.root)
    etcds = {etcd_name(p): p for p in _etcd_pids_under(ew.root)}
    bare = {etcd_name(p.pid): p.pid for p in floor.procs}
    if len(ctl) != 3 or len(etcds) != 3 or len(bare) != 3:
        raise RuntimeError(f"expected 3 of each, found controllers {ctl}, etcds {etcds}, bare etcds {bare}")
    time.sleep(settle)
    cpu = measure({**{f"c/{k}": p for k, p in ctl.items()}, **{f"e/{k}": p for k, p in etcds.items()},
                   **{f"b/{k}": p for k, p in bare.items()}}, idle)
    run = Run(leader=reconciler_leader(ew.root))
    run.controllers = {k: (cpu[f"c/{k}"], rss_mib(p)) for k, p in sorted(ctl.items())}
    run.etcd = {k: cpu[f"e/{k}"] for k in sorted(etcds)}
    run.bare = {k: cpu[f"b/{k}"] for k in sorted(bare)}
    return run


def print_run(i: int, r: Run) -> None:
    print(f"run {i}: controller CPU % of a core / RSS MiB; etcd CPU % with controllers / bare")
    for name, (cpu, rss) in r.controllers.items():
        lead = " (reconciler leader)" if name == r.leader else ""
        print(f"  {name:3s} controller {cpu:5.2f} % {rss:6.1f} MiB{lead:21s} etcd {r.etcd.get(name, 0):5.2f} % "
              f"/ bare {r.bare.get(name, 0):5.2f} %")
    print(f"  etcd total {sum(r.etcd.values()):5.2f} % / bare {sum(r.bare.values()):5.2f} % -> "
          f"{r.excess:+.0f} % caused by the controllers", flush=True)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=float, default=60.0, help="seconds measured (default 60)")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds after formation before measuring")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep data and logs, print where")
    args = ap.parse_args()
    etcd = find_etcd()
    ver = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    base = Path(tempfile.mkdtemp(prefix="etcdward-footprint-"))
    roots.append(base)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"footprint: {ver}, {os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.2f}; idle {args.idle:.0f}s after "
          f"{args.settle:.0f}s settle", flush=True)
    runs: list[Run] = []
    rc = 0
    try:
        for i in range(args.runs):
            try:
                runs.append(one_run(base, etcd, args.idle, args.settle))
            finally:
                kill_all()
            print_run(i + 1, runs[-1])
    except KeyboardInterrupt:
        rc = 130
    except Exception as e:  # noqa: BLE001 - report, clean up, exit 1
        print(f"error: {e}", file=sys.stderr)
        rc = 1
    finally:
        kill_all()
        if args.keep or rc == 1:
            print(f"data and logs kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if runs:
        ctl = [c for r in runs for c in r.controllers.values()]
        cpu_max, rss_max = max(c for c, _ in ctl), max(m for _, m in ctl)
        excess = statistics.median(r.excess for r in runs)
        print(f"\nloadavg at the end {os.getloadavg()[0]:.2f}; over {len(runs)} run(s):")
        print(f"  controller RSS max {rss_max:.1f} MiB (target < {TARGET_RSS_MIB:.0f}), "
              f"median {statistics.median(m for _, m in ctl):.1f}")
        print(f"  controller CPU max {cpu_max:.2f} % of a core (target < {TARGET_CPU}), "
              f"median {statistics.median(c for c, _ in ctl):.2f}")
        print(f"  etcd CPU caused by the controllers, median {excess:+.0f} % over bare (target <= "
              f"+{TARGET_ETCD_EXCESS:.0f} %); etcd with controllers median "
              f"{statistics.median(v for r in runs for v in r.etcd.values()):.2f} %, bare "
              f"{statistics.median(v for r in runs for v in r.bare.values()):.2f} %")
    return rc


if __name__ == "__main__":
    sys.exit(main())
