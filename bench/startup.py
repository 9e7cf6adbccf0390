"""CLI start-up benchmark: wall time of read-only etcdward commands against `etcdctl member list`.

    .venv/bin/python -m bench.startup [--runs 15]

Forms 3 controllers (as bench/formation.py does), then runs each command `--runs` times,
alternating with `etcdctl member list` against the same etcd (same certificates), and prints
the median wall times and the median of the pairwise ratios: pairing keeps the ratio meaningful
while the machine's load drifts. Wall time is from spawn to exit, Python start-up included.

etcdward runs as installed: with its bytecode compiled once (bench/__init__.py), as a wheel
install compiles it. An environment with PYTHONDONTWRITEBYTECODE would otherwise have every run
compile etcdward's modules from source first, which measures the environment, not the CLI (it
costs about as much as the reads); --no-bytecode measures that case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from etcdward import config
from etcdward.paths import DataDir

from .bench_procs import ETCDCTL, kill_all, roots
from .formation import run_etcdward

TARGET = 5.0


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.monotonic()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {p.stderr.decode(errors='replace').strip()[-300:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--no-bytecode", action="store_true", help="compile etcdward from source on every run, as "
                    "PYTHONDONTWRITEBYTECODE does when nothing is compiled yet")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="etcdward-startup-"))
    roots.append(base)
    env = dict(os.environ)  # compiled bytecode (bench/__init__.py), unless:
    if args.no_bytecode:
        env.pop("PYTHONPYCACHEPREFIX", None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    try:
        formed = asyncio.run(run_etcdward(3, base))
        assert formed.root is not None
        n1 = formed.root / "n1"
        data = DataDir(n1)
        port = config.load(data.effective_config).etcd.client_port
        (ca, _), (crt, key) = data.etcd_cert("ca"), data.etcd_cert("client")
        etcdctl = [ETCDCTL, f"--endpoints=https://127.0.0.1:{port}", f"--cacert={ca}", f"--cert={crt}", f"--key={key}",
                   "member", "list"]
        ew = [sys.executable, "-m", "etcdward"]
        commands = {"etcd member-list": [*ew, "etcd", "member-list", "--data-dir", str(n1)],
                    "get etcdmembers": [*ew, "get", "etcdmembers", "--data-dir", str(n1)],
                    "status": [*ew, "status", "--data-dir", str(n1)],
                    "--help": [*ew, "--help"]}
        print(f"CLI start-up, {args.runs} runs each, alternating with `etcdctl member list`; {os.cpu_count()} CPUs, "
              f"loadavg {os.getloadavg()[0]:.2f}; etcdward's bytecode "
              f"{'compiled on every run' if args.no_bytecode else 'compiled once'}", flush=True)
        print(f"{'command':18s} {'etcdward med':>12} {'etcdctl med':>11} {'ratio med':>9} {'ratio min/max':>13}")
        for what, argv in commands.items():
            timed(argv, env), timed(etcdctl)  # warm the page cache (and compile etcdward's bytecode)
            pairs = [(timed(argv, env), timed(etcdctl)) for _ in range(args.runs)]
            ratios = [a / b for a, b in pairs]
            print(f"{what:18s} {statistics.median(a for a, _ in pairs):11.3f}s {statistics.median(b for _, b in pairs):10.3f}s "
                  f"{statistics.median(ratios):8.1f}x {min(ratios):6.1f}/{max(ratios):.1f}x   (target <= {TARGET:.0f}x)",
                  flush=True)
        print(f"loadavg at the end {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        kill_all()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
