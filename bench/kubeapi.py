#!/usr/bin/env python3
"""The kube API against its baseline, in the same run on the same 3 controllers (loopback):

    .venv/bin/python -m bench.kubeapi [--reps 20] [--changes 50] [--keep]

get     wall time of `kubectl get etcdmembers` (a Table from the controller) against
        `etcdctl member list` (etcd answering directly), alternating, each a fresh process;
        kubectl keeps its discovery cache in one HOME, as an operator's does; `kubectl version
        --client` shows how much of it is kubectl's own start-up
watch   latency from an etcd change (a record's label written with a CAS through the store)
        to its MODIFIED event on an open watch stream of the kube API (target p95 <= 0.2 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import statistics
import subprocess
import time
from pathlib import Path

import httpx

from etcdward import pki, records
from bench.common import temp_cluster
from tests.cluster import Node
from tests.kube_helpers import GROUP_PATH, kubectl_binary, write_kubeconfig
from tests.test_records_support import form_in_sync


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {p.stderr}")
    return took


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]


def bench_get(n1: Node, kc: Path, home: Path, reps: int) -> tuple[list[float], list[float], list[float]]:
    env = {**os.environ, "HOME": str(home)}
    kube = [kubectl_binary(), f"--kubeconfig={kc}", "get", "etcdmembers"]
    ca, _ = n1.data.etcd_cert("ca")
    crt, key = n1.data.etcd_cert("client")
    etcdctl = [shutil.which("etcdctl") or "etcdctl", f"--endpoints=https://127.0.0.1:{n1.client_port}",
               f"--cacert={ca}", f"--cert={crt}", f"--key={key}", "member", "list"]
    timed(kube, env)  # discovery cache filled, as on an operator's machine
    start_only = [kubectl_binary(), "version", "--client"]  # kubectl's own start-up, no request
    k, e, s = [], [], []
    for _ in range(reps):
        k.append(timed(kube, env))
        e.append(timed(etcdctl, {**env, "ETCDCTL_API": "3"}))
        s.append(timed(start_only, env))
    return k, e, s


async def bench_watch(n1: Node, changes: int) -> list[float]:
    ctx = ssl.create_default_context(cafile=str(n1.data.ca_crt))
    ctx.load_cert_chain(n1.data.root / "kube-bench.crt", n1.data.root / "kube-bench.key")
    lat: list[float] = []
    async with httpx.AsyncClient(verify=ctx, base_url=f"https://{n1.address}:9443", timeout=None) as http, \
            n1.store() as st:
        rv = (await records.list_records(st)).revision
        async with http.stream("GET", GROUP_PATH, params={"watch": "true", "resourceVersion": str(rv)}) as resp:
            lines = resp.aiter_lines()
            for i in range(changes):
                t0 = time.monotonic()
                await records.modify(st, "n2", lambda r, i=i: r.with_status(labels=(("bench", str(i)),)))
                while True:
                    ev = json.loads(await anext(lines))
                    if ev["type"] == "MODIFIED" and ev["object"]["metadata"].get("labels", {}).get("bench") == str(i):
                        lat.append(time.monotonic() - t0)
                        break
                await asyncio.sleep(0.02)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--keep", action="store_true", help="keep data and logs")
    args = ap.parse_args()
    with temp_cluster("etcdward-bench-kube-", args.keep) as cluster:
        root = cluster.root
        (n1, _, _), _ = form_in_sync(cluster, ["n1", "n2", "n3"], sync_timeout=60)
        kc = write_kubeconfig(n1, root / "kubeconfig")
        # the bench's own client certificate, for the raw watch stream
        pair = pki.new_leaf(pki.load_pair(n1.data.ca_crt, n1.data.ca_key), "bench", [], server=False, client=True)
        pki.write_pair(pair, n1.data.root / "kube-bench.crt", n1.data.root / "kube-bench.key")
        k, e, s = bench_get(n1, kc, root / "home", args.reps)
        lat = asyncio.run(bench_watch(n1, args.changes))
        mk, me = statistics.median(k), statistics.median(e)
        print(f"get, {args.reps} alternating runs each (wall time of a fresh process):")
        print(f"  kubectl get etcdmembers   median {mk:.3f}s  p95 {p95(k):.3f}s")
        print(f"  etcdctl member list       median {me:.3f}s  p95 {p95(e):.3f}s")
        print(f"  ratio (median)            {mk / me:.2f}")
        print(f"  kubectl version --client  median {statistics.median(s):.3f}s  (kubectl's start-up alone)")
        print(f"watch, {args.changes} changes: etcd write -> MODIFIED event  median {statistics.median(lat):.4f}s  "
              f"p95 {p95(lat):.4f}s  max {max(lat):.4f}s  (target p95 <= 0.2 s)")


if __name__ == "__main__":
    main()
