"""Formation benchmark: how long until N controllers are N voting etcd members, against the floor.

    .venv/bin/python -m bench.formation [--nodes 3 5] [--runs 3] [--timeline] [--keep]
                                       [--only etcdward|floor] [--json FILE] [--backup-before-change]

Two measurements per run, interleaved on the same machine with the same etcd binary and flags:

etcdward   N real `python -m etcdward controller` processes (unique 127.78.x.y addresses, free
           client ports, temp data dirs). t0 = launch of n1 (bootstraps). As soon as n1's etcd
           passes a linearizable read, a token is created (in this process, as `token create`
           does) and n2..nN are launched at the same moment with that one token. Done when the
           member list (read from n1 every 50 ms) has N members, all started, none a learner.

floor      The scripted etcdctl sequence of etcd-behaviour.md §11.2: launch n1's etcd (new
           cluster) at t0; wait for `endpoint health`; then per node: `member add --learner`
           retried every 50 ms while refused, launch etcd with the returned initial cluster and
           `existing`, `member promote` retried every 50 ms until accepted. Done when the last
           promote is accepted. Certificates (etcdward.pki) are made before t0 and the etcd
           command line comes from etcdward.supervisor.etcd_args, so TLS, cipher suites,
           --strict-reconfig-check=true and --pre-vote are identical.

Compare the ratio, not absolute seconds (2 noisy cores). `--timeline` prints when each step
happened. Every process started here is killed at the end, also on failure, Ctrl-C and SIGTERM
(after a failure the temp dir with all logs is kept and its path printed).

To measure one commit while src/ is being edited: `git archive HEAD src | tar -x -C /tmp/snap`
and run with PYTHONPATH=/tmp/snap/src (the bench and every controller then use that copy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from etcdward import pki, tokens
from etcdward.durations import parse_duration
from etcdward.store import Store, local_store
from etcdward.store import errors as E
from etcdward.supervisor import LaunchPlan, etcd_args, find_etcd

from .bench_logs import STARTUP_KEYS, controller_events, etcd_events, phases, startup_phases
from .bench_procs import (ETCDCTL, EXTRA_CONFIG, POLL, RUN_TIMEOUT, Node, Result, _etcd_pids_under, cpu_seconds,
                          kill_all, port_open, roots, spawn)


async def _wait_store_ready(node: Node, proc: subprocess.Popen[bytes], deadline: float) -> Store:
    """Poll every 50 ms: TCP port open, then a linearizable read (a fresh gRPC channel only once
    the port listens, so gRPC's reconnect back-off never delays the detection)."""
    st: Store | None = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited with code {proc.returncode}")
            if st is None and port_open("127.0.0.1", node.client_port) and node.data.etcd_cert("client")[0].exists():
                st = local_store(node.data, node.client_port, timeout=2)
                with contextlib.suppress(E.StoreError, OSError):
                    await st.connect()
            if st is not None:
                try:
                    await st.ready(timeout=1.0)
                    return st
                except E.StoreError:
                    pass
            await asyncio.sleep(POLL)
        raise RuntimeError(f"{node.name}: etcd not ready within {RUN_TIMEOUT:.0f}s")
    except BaseException:
        if st is not None:
            with contextlib.suppress(Exception):
                await st.close()
        raise


async def run_etcdward(n: int, base: Path) -> Result:
    root = Path(tempfile.mkdtemp(prefix=f"ew{n}-", dir=base))
    nodes = [Node(f"n{i}", root) for i in range(1, n + 1)]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {nd.name: nd.log_file for nd in nodes}

    def launch(nd: Node, token_file: Path | None) -> None:
        nd.write_config(nd.config_dict())
        nd.launch(nd.controller_argv(token_file=token_file))
        assert nd.proc is not None
        procs[nd.name] = nd.proc

    first = nodes[0]
    t0_wall, t0 = time.time(), time.monotonic()
    launch(first, None)
    deadline = t0 + RUN_TIMEOUT
    st = await _wait_store_ready(first, procs[first.name], deadline)
    t_ready = time.monotonic()
    try:
        cfg = first.config()
        bearer, _ = await tokens.create(st, "controller", parse_duration("1h"))
        tok = tokens.encode(tokens.JoinToken(cfg.api_url, first.data.ca_crt.read_bytes(), bearer))
        tf = root / "token"
        tf.write_text(tok + "\n")
        tf.chmod(0o600)
        t_token = time.monotonic()
        for nd in nodes[1:]:
            launch(nd, tf)
        want = {nd.name for nd in nodes}
        events: list[tuple[float, str]] = [(t_ready - t0, "bench: n1 ready"), (t_token - t0, "bench: token ready")]
        seen: set[str] = set()
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcdward N={n}: not all voting after {RUN_TIMEOUT:.0f}s (logs in {root})")
            for name, p in procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {p.returncode}; see {logs[name]}")
            try:
                ms = await st.members(timeout=2)
            except E.StoreError:
                await asyncio.sleep(POLL)
                continue
            now = time.monotonic()
            voters = {m.name for m in ms if m.started and not m.is_learner}
            for name in sorted(voters - seen - {first.name}):
                events.append((now - t0, f"bench: sees {name} voting"))
            seen |= voters
            if voters >= want and len(ms) == n:
                t_done = now
                break
            await asyncio.sleep(POLL)
        cpu = {"controllers": sum(cpu_seconds(p.pid) for p in procs.values()),
               "etcd": sum(cpu_seconds(pid) for pid in _etcd_pids_under(root))}
    finally:
        await st.close()
    for nd in nodes:
        events += controller_events(nd, logs[nd.name], t0_wall)
    events.append((t_done - t0, "bench: ALL VOTING"))
    names = {nd.peer_url: nd.name for nd in nodes}
    eev = etcd_events(first.data.etcd_log, t0_wall, names)
    events += [(t, f"n1 etcd: {kind} {name}") for t, kind, name in eev]
    events.sort()
    py_start = next((t for t, what in events if what == "n1: decision"), 0.0)
    return Result("etcdward", n, total=t_done - t0, n1_ready=t_ready - t0, after_ready=t_done - t_token,
                  py_start=py_start, events=events, root=root, phases=phases(eev, t_done - t0),
                  startup=startup_phases(events, eev), cpu=cpu)


# -- floor: scripted etcdctl -----------------------------------------------------------------

class Floor:
    def __init__(self, n: int, base: Path, etcd: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"fl{n}-", dir=base))
        self.nodes = [Node(f"n{i}", self.root) for i in range(1, n + 1)]
        self.etcd = etcd
        self.procs: list[subprocess.Popen[bytes]] = []
        self._make_pki()

    def _make_pki(self) -> None:
        first = self.nodes[0]
        for i, nd in enumerate(self.nodes):
            if i:
                for src, dst in ((first.data.ca_crt, nd.data.ca_crt), (first.data.ca_key, nd.data.ca_key),
                                 *zip(first.data.etcd_cert("ca"), nd.data.etcd_cert("ca"))):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
            cfg = nd.config()
            pki.ensure_node_pki(nd.data, peer_address=cfg.peer_address, api_address=cfg.api_address, sans=(),
                                hostname="", create_cas=(i == 0))

    def etcdctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        d = self.nodes[0].data
        ca, _ = d.etcd_cert("ca")
        crt, key = d.etcd_cert("client")
        return subprocess.run(
            [ETCDCTL, f"--endpoints=https://127.0.0.1:{self.nodes[0].client_port}", f"--cacert={ca}",
             f"--cert={crt}", f"--key={key}", "--dial-timeout=1s", "--command-timeout=3s", *args],
            capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})

    def launch(self, nd: Node, plan: LaunchPlan) -> None:
        nd.data.logs.mkdir(parents=True, exist_ok=True)
        self.procs.append(spawn([self.etcd, *etcd_args(nd.config(), nd.data, plan)], nd.data.etcd_log))

    def check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"floor: an etcd exited with code {p.returncode} (logs under {self.root})")

    def retry(self, what: str, args: list[str], deadline: float) -> tuple[subprocess.CompletedProcess[str], int]:
        tries = 0
        while True:
            tries += 1
            r = self.etcdctl(*args)
            if r.returncode == 0:
                return r, tries
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"floor: {what} still refused after {tries} tries: {r.stderr.strip()[-300:]}")
            time.sleep(POLL)

    def run(self) -> Result:
        first = self.nodes[0]
        ev: list[tuple[float, str]] = []
        t0_wall, t0 = time.time(), time.monotonic()
        deadline = t0 + RUN_TIMEOUT
        self.launch(first, LaunchPlan(name=first.name, initial_cluster=f"{first.name}={first.peer_url}",
                                      state="new", cluster_token="bench-floor"))
        _, tries = self.retry("endpoint health", ["endpoint", "health"], deadline)
        t_ready = time.monotonic()
        ev.append((t_ready - t0, f"n1 healthy ({tries} tries)"))
        for nd in self.nodes[1:]:
            r, tries = self.retry(f"member add {nd.name}", ["member", "add", nd.name, f"--peer-urls={nd.peer_url}",
                                                            "--learner"], deadline)
            ev.append((time.monotonic() - t0, f"ADDED {nd.name} ({tries} tries)"))
            m_id = re.search(r"Member\s+([0-9a-f]+) added", r.stdout)
            m_ic = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', r.stdout)
            if not (m_id and m_ic):
                raise RuntimeError(f"floor: cannot parse member add output: {r.stdout!r}")
            self.launch(nd, LaunchPlan(name=nd.name, initial_cluster=m_ic.group(1), state="existing"))
            ev.append((time.monotonic() - t0, f"{nd.name}: etcd launched"))
            _, tries = self.retry(f"member promote {nd.name}", ["member", "promote", m_id.group(1)], deadline)
            ev.append((time.monotonic() - t0, f"PROMOTED {nd.name} ({tries} tries)"))
        t_done = time.monotonic()
        cpu = {"etcd": sum(cpu_seconds(p.pid) for p in self.procs)}
        ms = json.loads(self.etcdctl("member", "list", "-w", "json").stdout or "{}").get("members", [])
        if len(ms) != len(self.nodes) or any(m.get("isLearner") or not m.get("name") for m in ms):
            raise RuntimeError(f"floor: unexpected member list at the end: {ms}")
        ev.append((t_done - t0, "ALL VOTING"))
        eev = etcd_events(first.data.etcd_log, t0_wall, {nd.peer_url: nd.name for nd in self.nodes})
        ev = sorted(ev + [(t, f"n1 etcd: {kind} {name}") for t, kind, name in eev])
        return Result("floor", len(self.nodes), total=t_done - t0, n1_ready=t_ready - t0, after_ready=t_done - t_ready,
                      events=ev, root=self.root, phases=phases(eev, t_done - t0), cpu=cpu)


# -- driver ------------------------------------------------------------------------------------

def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: same clean-up as Ctrl-C


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} {min(xs):6.2f} {max(xs):6.2f}"


def print_timeline(r: Result) -> None:
    print(f"  --- {r.kind} N={r.n}: total {r.total:.2f}s (n1 ready {r.n1_ready:.2f}s)")
    for t, what in r.events:
        print(f"    {t:7.2f}  {what}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[3, 5], help="cluster sizes (default: 3 5)")
    ap.add_argument("--runs", type=int, default=3, help="runs per size and kind (default: 3)")
    ap.add_argument("--timeline", action="store_true", help="print each run's step timeline")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, data) and print where")
    ap.add_argument("--only", choices=["etcdward", "floor"], help="measure one side only (no ratio)")
    ap.add_argument("--json", type=Path, help="also write all results to this JSON file")
    ap.add_argument("--backup-before-change", action="store_true",
                    help="controllers run with spec.backup.beforeMembershipChange: true")
    args = ap.parse_args()
    if any(n < 2 or n > 9 for n in args.nodes):
        ap.error("--nodes: sizes between 2 and 9")
    if args.backup_before_change:
        EXTRA_CONFIG["spec"] = {"backup": {"beforeMembershipChange": True}}

    etcd = find_etcd()
    ver = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    base = Path(tempfile.mkdtemp(prefix="etcdward-bench-"))
    roots.append(base)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    print(f"formation benchmark: {ver} ({etcd}), etcdctl {ETCDCTL}, {os.cpu_count()} CPUs, "
          f"loadavg {os.getloadavg()[0]:.2f}; data under {base}", flush=True)
    results: dict[int, dict[str, list[Result]]] = {n: {"etcdward": [], "floor": []} for n in args.nodes}
    kinds = [args.only] if args.only else ["etcdward", "floor"]
    rc = 0
    try:
        for n in args.nodes:
            for i in range(args.runs):
                # alternate which side goes first, so slow drift of the machine's load hits both
                order = kinds if i % 2 == 0 else list(reversed(kinds))
                for kind in order:
                    try:
                        if kind == "etcdward":
                            r = asyncio.run(run_etcdward(n, base))
                        else:
                            r = Floor(n, base, etcd).run()
                    finally:
                        kill_all()
                    results[n][kind].append(r)
                    print(f"  N={n} run {i + 1}/{args.runs} {kind:8s} {r.total:6.2f}s "
                          f"(n1 ready {r.n1_ready:5.2f}s, then {r.after_ready:6.2f}s)", flush=True)
                    if args.timeline:
                        print_timeline(r)
                    if not args.keep and r.root:
                        shutil.rmtree(r.root, ignore_errors=True)
    except KeyboardInterrupt:
        print("interrupted: stopping everything", file=sys.stderr)
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

    print()
    print(f"loadavg at the end {os.getloadavg()[0]:.2f}")
    print("time from launch of n1 until all N are voting members, seconds (median min max)")
    print(f"{'N':>2} {'runs':>4} | {'etcdward med/min/max':>20} | {'floor med/min/max':>20} | {'ratio':>5}")
    for n in args.nodes:
        ew, fl = [r.total for r in results[n]["etcdward"]], [r.total for r in results[n]["floor"]]
        runs = max(len(ew), len(fl))
        if not runs:
            continue
        ratio = f"{statistics.median(ew) / statistics.median(fl):5.2f}" if ew and fl else "    -"
        print(f"{n:>2} {runs:>4} | {fmt(ew) if ew else '-':>20} | {fmt(fl) if fl else '-':>20} | {ratio}")
    print()
    print("phases (medians, s): n1 ready = launch -> n1's etcd passes a linearizable read "
          "(etcdward includes Python start-up and PKI);")
    print("then = token ready (etcdward) / n1 healthy (floor) -> all N voting")
    print("(etcdward py = launch -> n1's first log line, i.e. Python start-up and imports)")
    print(f"{'N':>2} | {'etcdward py':>11} {'n1 ready':>8} {'then':>7} | {'floor n1 ready':>14} {'then':>7} | "
          f"{'ratio then':>10}")
    for n in args.nodes:
        ew, fl = results[n]["etcdward"], results[n]["floor"]
        if not ew and not fl:
            continue

        def med(rs: list[Result], attr: str) -> float | None:
            return statistics.median(getattr(r, attr) for r in rs) if rs else None

        p, a, b = med(ew, "py_start"), med(ew, "n1_ready"), med(ew, "after_ready")
        c, d = med(fl, "n1_ready"), med(fl, "after_ready")
        s = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
        ratio = f"{b / d:.2f}" if b and d else "-"
        print(f"{n:>2} | {s(p):>11} {s(a):>8} {s(b):>7} | {s(c):>14} {s(d):>7} | {ratio:>10}")
    print()
    print("where the time goes (medians, s; from n1's etcd log): first add = launch -> first learner added;")
    print("per join = one add -> the next add (etcd's ~5 s gate after a learner connects), split into")
    print("add -> learner's peer connection active and active -> next add; last = last add -> all voting")
    print(f"{'N':>2} {'side':8} | {'first add':>9} | {'per join':>8} = {'add>active':>10} + {'active>add':>10} | "
          f"{'active>promote':>14} | {'last':>5}")
    for n in args.nodes:
        for kind in kinds:
            ph = [r.phases for r in results[n][kind] if r.phases]
            if not ph:
                continue

            def pm(key: str) -> str:
                vals = [p[key] for p in ph if key in p]
                return f"{statistics.median(vals):.2f}" if vals else "-"

            print(f"{n:>2} {kind:8} | {pm('first_add'):>9} | {pm('add_to_next_add'):>8} = {pm('add_to_active'):>10}"
                  f" + {pm('active_to_next_add'):>10} | {pm('active_to_promote'):>14} | {pm('last_add_to_done'):>5}")
    print()
    print("CPU seconds per run (medians): etcdward controllers (Python) / their etcds / the floor's etcds")
    for n in args.nodes:
        ew, fl = results[n]["etcdward"], results[n]["floor"]

        def mc(rs: list[Result], key: str) -> str:
            vals = [r.cpu[key] for r in rs if key in r.cpu]
            return f"{statistics.median(vals):.1f}" if vals else "-"

        print(f"{n:>2}   controllers {mc(ew, 'controllers'):>5}   etcd {mc(ew, 'etcd'):>5}   floor etcd {mc(fl, 'etcd'):>5}")
    if any(r.startup for n in args.nodes for r in results[n]["etcdward"]):
        print()
        print("etcdward start-up, medians (s):")
        print(f"{'':>2}   " + " ".join(f"{k:>14}" for k, _ in STARTUP_KEYS))
        for n in args.nodes:
            su = [r.startup for r in results[n]["etcdward"] if r.startup]
            if su:
                cells = []
                for k, _ in STARTUP_KEYS:
                    vals = [x[k] for x in su if k in x]
                    cells.append(f"{statistics.median(vals):14.2f}" if vals else f"{'-':>14}")
                print(f"{n:>2}   " + " ".join(cells))
        for k, what in STARTUP_KEYS:
            print(f"     {k:>14}: {what}")
    if args.json:
        args.json.write_text(json.dumps({str(n): {k: [{"total": r.total, "n1_ready": r.n1_ready, "py_start": r.py_start,
                                                        "after_ready": r.after_ready, "phases": r.phases,
                                                        "startup": r.startup, "cpu": r.cpu,
                                                        "events": r.events}
                                                       for r in v] for k, v in kinds_.items()}
                                         for n, kinds_ in results.items()}, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())

