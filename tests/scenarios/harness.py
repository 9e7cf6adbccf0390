"""Multi-host scenario harness: one real `etcdward controller` per network-namespace node.

    with World("test_x", 5, outdir) as w:
        n1 = w.bootstrap()                 # n1 bootstraps, waits until its etcd serves
        token = n1.token()                 # `etcdward token create` run inside n1
        for h in w.hosts_except(n1): h.start(token)
        w.wait_voters(w.names())
        w.check_invariants(w.names())

Each Host is a netbed node (own IP on a private bridge, own hostname and /etc/hosts) running a
controller with the DEFAULT ports (2379 client on 127.0.0.1, 2380 peer, 9443 join API), config
`peerAddress: <node ip>`, `leaseTTL: 4`, and no extraArgs.name: the member name comes from the
node's hostname, as on a real machine.  Everything a test talks to (etcdctl, the etcdward CLI)
runs INSIDE a node, because the client port listens on the node's own 127.0.0.1.

Files of one scenario run (kept only when it fails, for CI artifacts):
    test-output/scenarios/<test>/events.log          what the harness did, with times
    test-output/scenarios/<test>/<node>/controller.log
    test-output/scenarios/<test>/<node>/data/...     the data dir (etcd wal/snap pruned on failure)

Modules: common.py (constants, process helpers), host.py (Host), writer.py (Writer),
invariants.py (the checks), harness.py (World: the bed, its hosts, faults, cleanup).
Plain modules (no pytest import) so they can be driven from a shell too.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import invariants
from .common import (
    BED_PREFIX,
    CTLWRAP,
    ETCDCTL,
    LEASE_TTL,
    OUTPUT_ROOT,
    OWNER,
    REPO,
    WRITES,
    ScenarioError,
    _proc_start,
    etcd_binary,
    netbed,
    netbed_ok,
    safe_name,
    tail,
    wait_until,
)
from .host import Host
from .invariants import Checked, get_records, joined
from .writer import Writer

_WORLDS: set["World"] = set()  # open worlds of this process


def install_sigterm_cleanup() -> None:
    """On SIGTERM (e.g. a CI timeout): close every open world (kill its processes, delete its
    bed, keep its logs with etcd's wal/snap pruned), then let netbed's handler finish."""
    netbed.install_sigterm_cleanup()
    after = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        for w in list(_WORLDS):
            try:
                w.close(keep=True)
            except Exception as e:  # noqa: BLE001 - keep cleaning up the others
                print(f"scenario cleanup of {w.name} failed: {e}", file=sys.stderr)
        if callable(after):
            after(signum, frame)

    signal.signal(signal.SIGTERM, handler)


def cleanup_stale_beds() -> list[str]:
    """Tear down scenario beds whose creating process is dead (an interrupted earlier run)."""
    return netbed.cleanup_stale(BED_PREFIX)


# ---- a scenario's world -----------------------------------------------------------------

class World:
    """A bed of n nodes, one Host per node, a writer, invariant checks and the event log."""

    def __init__(self, name: str, n: int, outdir: Path | None = None, seed: int | None = None) -> None:
        self.name = name
        self.outdir = claim_outdir(outdir or OUTPUT_ROOT / safe_name(name))
        self.seed = seed
        self.rng = random.Random(seed)
        self.t0 = time.monotonic()
        self._events = (self.outdir / "events.log").open("a", buffering=1)
        self.violations: list[str] = []
        self.known: list[str] = []
        self.writer: Writer | None = None
        self.bed = netbed.NetBed(n, workdir=self.outdir / "bed", prefix=BED_PREFIX + os.urandom(3).hex())
        self.hosts: dict[str, Host] = {}
        self._closed = False
        _WORLDS.add(self)
        try:
            for node in self.bed.nodes:
                self.hosts[node] = Host(self, node)
            self.event(f"bed {self.bed.prefix} up: {', '.join(f'{h.node}={h.ip}' for h in self.hosts.values())}"
                       + (f"; seed {seed}" if seed is not None else ""))
        except BaseException:
            self.close()
            raise

    # -- bookkeeping ----------------------------------------------------------------------
    def event(self, msg: str) -> None:
        line = f"{time.monotonic() - self.t0:7.2f}s {msg}"
        self._events.write(line + "\n")

    def known_bug(self, msg: str) -> None:
        """A symptom of a known, reported bug: logged and printed, not a failure (unless
        ETCDWARD_SCENARIO_STRICT is set)."""
        if os.environ.get("ETCDWARD_SCENARIO_STRICT"):
            self.violation("known bug (strict mode): " + msg)
            raise ScenarioError("known bug (ETCDWARD_SCENARIO_STRICT): " + msg)
        self.event("KNOWN BUG: " + msg)
        self.known.append(msg)
        print(f"[scenario] KNOWN BUG: {msg}")

    def violation(self, msg: str) -> None:
        self.event("VIOLATION: " + msg)
        self.violations.append(msg)

    def __getitem__(self, node: str) -> Host:
        return self.hosts[node]

    def names(self) -> set[str]:
        return set(self.hosts)

    def others(self, *exclude: Host) -> list[Host]:
        skip = {h.node for h in exclude}
        return [h for h in self.hosts.values() if h.node not in skip]

    def live(self) -> list[Host]:
        return [h for h in self.hosts.values() if h.alive()]

    # -- building a cluster ---------------------------------------------------------------
    def bootstrap(self, node: str = "n1", timeout: float = 90.0) -> Host:
        h = self.hosts[node]
        h.start()
        wait_until(h.serves, timeout, f"{node} serving", detail=lambda: tail(h.log_file))
        wait_until(lambda: (h.data_root / "state" / "config.yaml").exists(), 30, f"{node} effective config")
        self.event(f"{node}: bootstrapped and serving")
        return h

    def wait_voters(self, names: Iterable[str], timeout: float = 180.0, via: Iterable[Host] | None = None) -> None:
        """Until every given host's etcd lists exactly `names` as started voters and serves."""
        want = set(names)
        hosts = list(via) if via is not None else [self.hosts[n] for n in sorted(want)]

        def ok() -> bool:
            for h in hosts:
                if not h.alive():
                    raise ScenarioError(f"{h.node}: controller is not running (rc {h.returncode()})")
                _, ms = h.members()
                voters = {m["name"] for m in ms if m["name"] and not m["isLearner"]}
                if voters != want or len(ms) != len(want):
                    raise ScenarioError(f"{h.node} sees {[(m['name'] or '?', m['isLearner']) for m in ms]}")
                if not h.serves():
                    raise ScenarioError(f"{h.node} does not serve linearizable reads")
            return True

        wait_until(ok, timeout, f"voters == {sorted(want)}", interval=1.0, detail=self._diag)
        self.event(f"voters == {sorted(want)}")

    def etcd_leader(self, among: Iterable[Host] | None = None) -> Host:
        """The host whose etcd is the raft leader, as most of the answering hosts see it."""
        statuses = {}
        for h in among if among is not None else self.live():
            try:
                statuses[h.node] = h.status()
            except ScenarioError:
                continue
        votes: dict[str, int] = {}
        for st in statuses.values():
            if st["leader"] != "0":
                votes[st["leader"]] = votes.get(st["leader"], 0) + 1
        if votes:
            leader_id = max(votes, key=lambda k: votes[k])
            for node, st in statuses.items():
                if st["member_id"] == leader_id:
                    return self.hosts[node]
        raise ScenarioError(f"no etcd leader found (statuses {statuses})")

    def reconciler_leader(self, via: Host | None = None) -> str | None:
        """Name of the reconciler leader from /etcdward/election/reconciler."""
        hosts = [via] if via else self.live()
        for h in hosts:
            p = h.etcdctl("get", "--print-value-only", "/etcdward/election/reconciler")
            if p.returncode == 0:
                v = p.stdout.strip()
                self.event(f"reconciler leader key via {h.node}: {v or '(none)'}")
                return json.loads(v)["name"] if v else None
        return None

    def stop_all(self, timeout: float = 60.0) -> None:
        """SIGTERM every controller at once, then wait for each (a clean shutdown stops etcd)."""
        live = self.live()
        for h in live:
            h.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for h in live:
            h.stop(timeout)

    # -- faults ---------------------------------------------------------------------------
    def partition(self, host: Host, peers: Iterable[Host] | None = None) -> None:
        names = None if peers is None else [p.node for p in peers]
        self.bed.partition(host.node, names)
        self.event(f"{host.node}: partitioned from {names or 'all peers'}")

    def heal(self, *hosts: Host) -> None:
        for h in hosts or tuple(self.hosts.values()):
            self.bed.heal(h.node)
        self.event(f"healed {[h.node for h in hosts] or 'all'}")

    # -- writer ---------------------------------------------------------------------------
    def start_writer(self, interval: float = 0.25) -> Writer:
        self.writer = Writer(self, interval=interval)
        self.writer.start()
        self.event("writer started")
        return self.writer

    # -- invariants (invariants.py) -------------------------------------------------------
    def check_invariants(self, expected: Iterable[str], timeout: float = 120.0, bootstrapper: str = "n1",
                         stop_all: bool = True) -> Checked:
        """See invariants.check_invariants."""
        return invariants.check_invariants(self, expected, timeout=timeout, bootstrapper=bootstrapper,
                                           stop_all=stop_all)

    def check_processes(self, expect_none: bool = False) -> None:
        invariants.check_processes(self, expect_none=expect_none)

    # -- diagnostics ----------------------------------------------------------------------
    def _diag(self) -> str:
        out = []
        for h in self.hosts.values():
            out.append(f"--- {h.node} ({'up' if h.alive() else f'down rc={h.returncode()}'}), last log lines:")
            out.append(tail(h.log_file, 12))
        return "\n".join(out)

    # -- cleanup --------------------------------------------------------------------------
    def close(self, keep: bool = False) -> None:
        """Stop the writer, kill everything, delete the bed.  keep=False: delete the run's
        folder; keep=True: keep logs and state for CI artifacts (etcd wal/snap pruned)."""
        if self._closed:
            return
        self._closed = True
        _WORLDS.discard(self)
        keep = keep or bool(os.environ.get("ETCDWARD_SCENARIO_KEEP"))
        try:
            if self.writer is not None:
                self.writer.stop()
            for h in self.hosts.values():
                try:
                    if h.alive():
                        h.kill9()
                except Exception as e:  # noqa: BLE001 - cleanup continues
                    self.event(f"cleanup: kill of {h.node} failed: {e}")
        finally:
            try:
                self.bed.close()  # kills whatever is left in the namespaces, deletes them
            finally:
                self.event(f"bed {self.bed.prefix} closed")
                self._events.close()
                if keep:
                    prune_for_artifacts(self.outdir)
                else:
                    shutil.rmtree(self.outdir, ignore_errors=True)

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(keep=exc[0] is not None)


def claim_outdir(base: Path) -> Path:
    """`base`, or `base.2`, `base.3`... when another live process (e.g. a second pytest run on
    the same checkout) is using it.  A folder left by a finished run is replaced."""
    base.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "start": _proc_start(os.getpid())}
    for i in range(1, 100):
        cand = base if i == 1 else base.with_name(f"{base.name}.{i}")
        if cand.exists():
            try:
                owner = json.loads((cand / OWNER).read_text())
            except (OSError, ValueError):
                owner = {}
            if owner.get("pid") and owner != me and _proc_start(owner["pid"]) == owner.get("start"):
                continue  # a live run owns it
            shutil.rmtree(cand, ignore_errors=True)
        try:
            cand.mkdir()
        except FileExistsError:
            continue  # lost a race for it
        (cand / OWNER).write_text(json.dumps(me))
        return cand
    raise ScenarioError(f"no free output folder next to {base}")



def prune_for_artifacts(root: Path) -> None:
    """Keep logs, configs and state; drop etcd's wal/snap files (64 MB preallocated each)."""
    for d in root.glob("*/data/etcd*"):
        if d.is_dir():
            for sub in ("member/wal", "member/snap"):
                shutil.rmtree(d / sub, ignore_errors=True)
    shutil.rmtree(root / "bed", ignore_errors=True)


__all__ = ["BED_PREFIX", "CTLWRAP", "ETCDCTL", "LEASE_TTL", "OUTPUT_ROOT", "REPO", "WRITES", "Checked", "Host",
           "ScenarioError", "World", "Writer", "etcd_binary", "get_records", "joined",
           "netbed_ok", "safe_name", "tail", "wait_until"]
