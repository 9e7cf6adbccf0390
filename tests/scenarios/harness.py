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

Plain module (no pytest import) so it can be driven from a shell too.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import netbed  # noqa: E402
from netbed import NetBed  # noqa: E402

REPO = TESTS.parent
OUTPUT_ROOT = REPO / "test-output" / "scenarios"
CTLWRAP = Path(__file__).resolve().parent / "ctlwrap.py"  # python -m etcdward + SIGUSR1 stack dumps
ETCDCTL = os.environ.get("ETCDWARD_ETCDCTL") or shutil.which("etcdctl") or "/usr/bin/etcdctl"
WRITES = "/scenario/writes/"
LEASE_TTL = 4
BOOTSTRAP_LINE = "start decision: BOOTSTRAP"


class ScenarioError(AssertionError):
    pass


# A controller that hung on SIGTERM because KeptLease.close() waited for a keep-alive task that
# had absorbed its cancellation (test_product_bugs.py; fixed in the product) used to be reported
# as a known bug; now any stop hang fails the scenario.  True restores the tolerance.
TOLERATE_LEASE_HANG = False

BED_PREFIX = "sc"  # scenario beds: sc<6 hex>; cleanup_stale_beds() only touches these


def etcd_binary() -> str | None:
    return os.environ.get("ETCDWARD_ETCD_BIN") or shutil.which("etcd")


def netbed_ok() -> tuple[bool, str]:
    """(True, "") when scenarios can run here, else (False, the reason for the skip)."""
    ok, why = netbed.netbed_available()
    if not ok:
        return False, f"network-namespace bed unavailable: {why}"
    if not etcd_binary():
        return False, "no etcd binary (apt-get install etcd-server, or set ETCDWARD_ETCD_BIN)"
    if not os.access(ETCDCTL, os.X_OK):
        return False, f"no etcdctl at {ETCDCTL} (apt-get install etcd-client, or set ETCDWARD_ETCDCTL)"
    return True, ""


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


# ---- small process helpers --------------------------------------------------------------

def proc_state(pid: int) -> str | None:
    """One-letter state of pid ('R', 'S', 'Z', ...), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def running(pid: int) -> bool:
    """Alive and not a zombie (a late-reaping PID 1 keeps killed orphans as Z; testbed.md 8.1)."""
    st = proc_state(pid)
    return st is not None and st != "Z"


def ppid_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


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


# ---- one host ---------------------------------------------------------------------------

class Host:
    """One node of the bed and the controller that runs on it."""

    def __init__(self, world: "World", node: str) -> None:
        self.world = world
        self.bed = world.bed
        self.node = node
        self.ip = self.bed.ip(node)
        self.dir = world.outdir / node
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_root = self.dir / "data"
        self.config_file = self.dir / "config.yaml"
        self.log_file = self.dir / "controller.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.extra_config: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Host({self.node}, {self.ip}, {'up' if self.alive() else 'down'})"

    # -- paths ----------------------------------------------------------------------------
    @property
    def etcd_dir(self) -> Path:
        return self.data_root / "etcd"

    @property
    def etcd_log(self) -> Path:
        return self.data_root / "logs" / "etcd.log"

    def pki(self, kind: str) -> tuple[Path, Path]:
        d = self.data_root / "pki" / "etcd"
        return d / f"{kind}.crt", d / f"{kind}.key"

    def has_db(self) -> bool:
        return (self.etcd_dir / "member" / "snap" / "db").is_file()

    def tombstone(self) -> Path:
        return self.data_root / "state" / "removed.json"

    def identity(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.data_root / "state" / "identity.json").read_text())
        except (OSError, ValueError):
            return None

    # -- lifecycle ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"spec": {"storage": {"etcd": {"peerAddress": self.ip}},
                                        "reconciler": {"leaseTTL": LEASE_TTL}}}
        _merge(cfg, self.extra_config)
        return cfg

    def start(self, token: str | None = None, env: dict[str, str] | None = None) -> None:
        if self.alive():
            raise ScenarioError(f"{self.node}: controller already running (pid {self.proc.pid})")  # type: ignore[union-attr]
        import yaml

        self.config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        argv = [sys.executable, str(CTLWRAP), "controller", *([token] if token else []),
                "-c", str(self.config_file), "--data-dir", str(self.data_root)]
        self.starts += 1
        with self.log_file.open("ab") as log:
            log.write(f"\n=== harness: start #{self.starts} {'with' if token else 'without'} token "
                      f"at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.proc = self.bed.popen(self.node, argv, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, **(env or {})}, start_new_session=True,
                                       cwd=str(self.dir))
        self.world.event(f"{self.node}: start #{self.starts} (pid {self.proc.pid}, "
                         f"{'token' if token else 'no token'})")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def etcd_pid(self) -> int | None:
        """PID of the etcd running on this host's data dir (from state/etcd.pid), if running."""
        try:
            pid = int((self.data_root / "state" / "etcd.pid").read_text())
        except (OSError, ValueError):
            return None
        if running(pid) and f"--data-dir={self.etcd_dir}" in cmdline(pid):
            return pid
        return None

    def etcd_pids_in_node(self) -> list[int]:
        """Every live etcd process in this node's network namespace."""
        return [p for p in self.bed.pids(self.node) if running(p) and is_etcd(p)]

    def kill9(self, mode: str = "both") -> None:
        """SIGKILL, as a crash would.  mode "both": controller and etcd (machine crash);
        "controller": the controller only -- its etcd must die by itself (PDEATHSIG)."""
        etcd = self.etcd_pid()
        if self.proc is not None and self.proc.poll() is None:
            self.bed.kill9(self.proc.pid)  # kills and reaps (it is our child)
        if mode == "both" and etcd:
            self._kill_pid(etcd)
        if etcd:
            try:
                wait_until(lambda: not running(etcd), 10, f"{self.node}: etcd {etcd} gone", interval=0.05)
            except ScenarioError:
                self.world.violation(f"{self.node}: etcd pid {etcd} still running 10s after its controller was "
                                     f"killed with -9 (mode {mode}): orphan")
                self._kill_pid(etcd)
        self.world.event(f"{self.node}: kill -9 ({mode}; etcd pid {etcd})")

    def _kill_pid(self, pid: int) -> None:
        try:
            self.bed.kill9(pid)
        except ValueError:
            # netbed refuses PIDs outside the bed; a zombie has no namespaces any more, so an
            # etcd that just died (PDEATHSIG) and awaits reaping by PID 1 lands here
            if running(pid):
                raise

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM and wait; a controller that does not stop in time is a violation, then killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGUSR1)  # ctlwrap: task stacks into the log
                time.sleep(1.0)
                dump = self.log().rsplit("=== harness: SIGUSR1", 1)[-1]
                msg = (f"{self.node}: controller did not stop within {timeout:.0f}s of SIGTERM (task stacks at the "
                       f"end of {self.log_file})")
                if TOLERATE_LEASE_HANG and "Task cancelling name='lease-" in dump and "KeptLease._keep" in dump:
                    self.world.known_bug(msg + ": the KeptLease cancellation bug (test_product_bugs.py)")
                else:
                    self.world.violation(msg)
                self.kill9()
        self.world.event(f"{self.node}: stopped (rc {self.proc.returncode})")
        return self.proc.returncode

    def restart(self, token: str | None = None, how: str = "term") -> None:
        """Stop (how="term": SIGTERM; "kill": kill -9 of controller and etcd) and start again."""
        if how == "kill":
            self.kill9("both")
        else:
            self.stop()
        self.start(token)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    # -- running things inside the node ---------------------------------------------------
    def run(self, argv: list[str], timeout: float = 60.0, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return self.bed.run(self.node, argv, capture_output=True, text=True, timeout=timeout, input=input,
                                env={**os.environ, **(env or {})}, cwd=str(self.dir),
                                stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(argv, 124, stdout="", stderr=f"timed out after {e.timeout}s")

    def cli(self, *args: str, timeout: float = 60.0, data_dir: bool = True) -> subprocess.CompletedProcess[str]:
        """`etcdward ARGS [--data-dir <this host's>]` inside the node."""
        extra = ["--data-dir", str(self.data_root)] if data_dir else []
        return self.run([sys.executable, "-m", "etcdward", *args, *extra], timeout=timeout)

    def etcdctl(self, *args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        ca, _ = self.pki("ca")
        crt, key = self.pki("client")
        return self.run([ETCDCTL, "--endpoints=https://127.0.0.1:2379", f"--cacert={ca}", f"--cert={crt}",
                         f"--key={key}", "--dial-timeout=2s", f"--command-timeout={timeout:g}s", *args],
                        timeout=timeout + 10, env={"ETCDCTL_API": "3"})

    def etcdctl_json(self, *args: str, timeout: float = 5.0) -> Any:
        p = self.etcdctl(*args, "-w", "json", timeout=timeout)
        if p.returncode != 0:
            raise ScenarioError(f"{self.node}: etcdctl {' '.join(args)} failed: {p.stderr.strip()[-300:]}")
        return json.loads(p.stdout)

    def status(self) -> dict[str, Any]:
        """etcd's own view: cluster_id, member_id, leader, is_learner, version, raft term."""
        st = self.etcdctl_json("endpoint", "status")[0]["Status"]
        return {"cluster_id": format(st["header"]["cluster_id"], "x"),
                "member_id": format(st["header"]["member_id"], "x"),
                "leader": format(st.get("leader", 0), "x"), "is_learner": bool(st.get("isLearner")),
                "version": st.get("version"), "raft_term": st.get("raftTerm")}

    def members(self) -> tuple[str, list[dict[str, Any]]]:
        """(cluster id, members) from `etcdctl member list` on this node."""
        d = self.etcdctl_json("member", "list")
        out = [{"id": format(m["ID"], "x"), "name": m.get("name", ""), "peerURLs": sorted(m.get("peerURLs", [])),
                "isLearner": bool(m.get("isLearner"))} for m in d.get("members", [])]
        return format(d["header"]["cluster_id"], "x"), sorted(out, key=lambda m: m["id"])

    def serves(self) -> bool:
        """A linearizable read passes here: etcd is up, a voter, and sees a quorum."""
        return self.etcdctl("get", "--consistency=l", "/scenario/probe", timeout=4).returncode == 0

    def token(self, expiry: str = "2h") -> str:
        p = wait_until(lambda: _ok(self.cli("token", "create", "--role", "controller", "--expiry", expiry)), 60,
                       f"{self.node}: token create")
        tok = p.stdout.strip().splitlines()[-1]
        self.world.event(f"{self.node}: created a join token")
        return tok

    def set_hostname(self, name: str) -> None:
        self.bed.set_hostname(self.node, name)
        self.world.event(f"{self.node}: hostname -> {name}")

    def fqdn(self) -> str:
        return f"{self.node}.{self.bed.domain}"

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log().splitlines() if needle in line]


def _ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str] | None:
    return p if p.returncode == 0 else None


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


# ---- the continuous writer (invariant 4) ------------------------------------------------

class Writer(threading.Thread):
    """Writes /scenario/writes/<seq> through whichever host answers, one at a time, and
    records which writes etcd ACKNOWLEDGED.  Never reuses a sequence number, so a write that
    timed out (and may or may not have landed) cannot be confused with an acknowledged one.
    Stops by itself after `max_seconds`."""

    def __init__(self, world: "World", interval: float = 0.25, max_seconds: float = 900.0) -> None:
        super().__init__(name=f"writer-{world.name}", daemon=True)
        self.world = world
        self.interval = interval
        self.max_seconds = max_seconds
        self.acked: dict[int, str] = {}  # seq -> node that acknowledged it
        self.failed = 0
        self.seq = 0
        self._halt = threading.Event()
        self._rr = 0

    def _candidates(self) -> list[Host]:
        hosts = [h for h in self.world.hosts.values() if h.alive() and h.has_db()]
        if not hosts:
            return []
        self._rr = (self._rr + 1) % len(hosts)
        return hosts[self._rr:] + hosts[:self._rr]

    def run(self) -> None:
        end = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < end:
            for h in self._candidates():
                if self._halt.is_set():
                    break
                self.seq += 1
                key = f"{WRITES}{self.seq:08d}"
                p = h.etcdctl("put", key, f"{self.seq} via {h.node}", timeout=3)
                if p.returncode == 0 and p.stdout.strip() == "OK":
                    self.acked[self.seq] = h.node
                    break
                self.failed += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(30)

    def present(self, host: Host) -> set[int]:
        p = host.etcdctl("get", "--consistency=l", "--prefix", "--keys-only", WRITES, timeout=20)
        if p.returncode != 0:
            raise ScenarioError(f"{host.node}: cannot read back {WRITES}: {p.stderr.strip()[-300:]}")
        return {int(k[len(WRITES):]) for k in p.stdout.split() if k.startswith(WRITES)}


# ---- a scenario's world -----------------------------------------------------------------

@dataclass
class Checked:
    """What check_invariants saw, for the caller and the events log."""
    cluster_id: str = ""
    members: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] | None = None
    acked_writes: int = 0
    notes: list[str] = field(default_factory=list)


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
        self.bed = NetBed(n, workdir=self.outdir / "bed", prefix=BED_PREFIX + os.urandom(3).hex())
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
        """A symptom of a known, reported product bug: logged and printed, not a failure."""
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

    # -- invariants -----------------------------------------------------------------------
    def check_invariants(self, expected: Iterable[str], timeout: float = 120.0, bootstrapper: str = "n1",
                         stop_all: bool = True) -> Checked:
        """The five invariants of issue 5 for the hosts named in `expected` (all must be live
        voters), plus: only `bootstrapper` ever decided BOOTSTRAP, and only once.
        With stop_all, every controller is then stopped and no etcd may remain (invariant 5)."""
        want = set(expected)
        hosts = [self.hosts[n] for n in sorted(want)]
        res = Checked()
        # (1) + (2): one cluster ID, the same member list everywhere, equal to `expected`
        self.wait_voters(want, timeout=timeout, via=hosts)

        def agree() -> bool:
            ids, views = {}, {}
            for h in hosts:
                cid, ms = h.members()
                st = h.status()
                ids[h.node] = {cid, st["cluster_id"]}
                views[h.node] = json.dumps(ms, sort_keys=True)
            all_ids = set().union(*ids.values())
            if len(all_ids) != 1:
                raise ScenarioError(f"cluster IDs differ: {ids}")
            if len(set(views.values())) != 1:
                raise ScenarioError(f"member lists differ: {views}")
            res.cluster_id = all_ids.pop()
            res.members = json.loads(next(iter(views.values())))
            return True

        wait_until(agree, timeout, "one cluster ID and one member list on every node", interval=1.0)
        for h in hosts:  # the pinned identity agrees with etcd
            ident = h.identity() or {}
            if ident.get("clusterID") not in (None, res.cluster_id):
                self.violation(f"{h.node}: identity.json pins cluster {ident.get('clusterID')}, etcd says {res.cluster_id}")
        names = [m["name"] for m in res.members]
        if len(set(names)) != len(names) or set(names) != want:
            self.violation(f"member names {names} != expected {sorted(want)}")
        # the product's own view (k0s format) agrees with etcdctl's
        p = hosts[0].cli("etcd", "member-list")
        k0s_view = {m["name"]: m["peerURLs"][0] for m in res.members}
        if p.returncode != 0 or json.loads(p.stdout or "{}").get("members") != k0s_view:
            self.violation(f"`etcdward etcd member-list` on {hosts[0].node}: rc {p.returncode} "
                           f"{(p.stdout or p.stderr).strip()[-300:]} != {k0s_view}")
        # other nodes that still run etcd must not be in some other cluster
        for h in self.hosts.values():
            if h.node not in want and h.etcd_pid():
                try:
                    cid = h.status()["cluster_id"]
                except ScenarioError:
                    continue
                if cid != res.cluster_id:
                    self.violation(f"{h.node} runs etcd of another cluster {cid} (main cluster {res.cluster_id})")
        # (3) records == members
        res.records = self.check_records(hosts, res.members, timeout=min(timeout, 60.0))
        if res.records is None:
            res.notes.append("invariant 3 skipped: `etcdward get etcdmembers` is not available yet")
        # (4) no acknowledged write lost
        if self.writer is not None:
            self.writer.stop()
            acked = set(self.writer.acked)
            res.acked_writes = len(acked)
            for h in hosts:
                missing = acked - self.writer.present(h)
                if missing:
                    self.violation(f"{h.node}: {len(missing)} acknowledged writes missing, e.g. "
                                   f"{sorted(missing)[:10]} (acked via {[self.writer.acked[s] for s in sorted(missing)[:10]]})")
            self.event(f"writer: {len(acked)} acknowledged, {self.writer.failed} failed attempts, read back on "
                       f"{[h.node for h in hosts]}")
            if len(acked) == 0:
                self.violation("the writer got no write acknowledged at all")
        # extra: nobody but the bootstrapper ever bootstrapped
        for h in self.hosts.values():
            n = len(h.log_lines(BOOTSTRAP_LINE))
            if h.node == bootstrapper and n != 1:
                self.violation(f"{h.node}: {n} BOOTSTRAP decisions (want exactly 1)")
            elif h.node != bootstrapper and n:
                self.violation(f"{h.node} decided BOOTSTRAP ({n}x): a second cluster")
        # (5) no orphan etcd
        self.check_processes()
        if stop_all:
            self.stop_all()
            self.check_processes(expect_none=True)
        for h in self.hosts.values():  # not a failure by itself, but worth a look in the artifacts
            tracebacks = len(h.log_lines("Traceback (most recent call last)"))
            if tracebacks:
                res.notes.append(f"{h.node}: {tracebacks} Python tracebacks in {h.log_file.name}")
        self.event(f"invariants checked: cluster {res.cluster_id}, {len(res.members)} members, "
                   f"{res.acked_writes} acked writes, notes {res.notes}")
        for note in res.notes:
            print(f"[scenario] note: {note}")
        if self.violations:
            raise ScenarioError("invariant violations:\n  " + "\n  ".join(self.violations))
        return res

    def check_records(self, hosts: list[Host], members: list[dict[str, Any]], timeout: float = 60.0
                      ) -> list[dict[str, Any]] | None:
        """(3) One record per member (same member ID, Joined=True), no two records with one
        member ID, and a record whose member is gone is Joined=False.  None if the records CLI
        does not exist yet."""
        if not records_cli_available():
            return None
        member_ids = {m["id"]: m["name"] for m in members}
        seen: list[dict[str, Any]] = []

        def converged() -> bool:
            for h in hosts:
                items = get_records(h)
                seen[:] = items
                by_id: dict[str, list[str]] = {}
                for it in items:
                    mid = (it.get("status") or {}).get("memberID") or ""
                    by_id.setdefault(mid.lower(), []).append(it["metadata"]["name"])
                dups = {k: v for k, v in by_id.items() if k and len(v) > 1}
                if dups:
                    raise ScenarioError(f"{h.node}: records share member IDs: {dups}")
                for mid, name in member_ids.items():
                    recs = [it for it in items if ((it.get("status") or {}).get("memberID") or "").lower() == mid]
                    if len(recs) != 1:
                        raise ScenarioError(f"{h.node}: member {name} ({mid}) has {len(recs)} records")
                    if joined(recs[0]) is not True:
                        raise ScenarioError(f"{h.node}: record {recs[0]['metadata']['name']} of live member "
                                            f"{mid} is not Joined=True: {recs[0].get('status')}")
                for it in items:
                    mid = ((it.get("status") or {}).get("memberID") or "").lower()
                    if mid not in member_ids and joined(it) is True:
                        raise ScenarioError(f"{h.node}: record {it['metadata']['name']} (member {mid or '-'}) is "
                                            "Joined=True but not an etcd member")
            return True

        try:
            wait_until(converged, timeout, "records == members", interval=1.0)
        except ScenarioError as e:
            self.violation(str(e))
        return seen

    def check_processes(self, expect_none: bool = False) -> None:
        """(5) Each node runs at most one etcd, owned by its live controller; with expect_none
        (all controllers stopped) no etcd may be left at all."""
        for h in self.hosts.values():
            def clean() -> bool:
                pids = h.etcd_pids_in_node()
                if expect_none or not h.alive():
                    if pids:
                        raise ScenarioError(f"{h.node}: etcd {pids} running without a controller")
                    return True
                if len(pids) > 1:
                    raise ScenarioError(f"{h.node}: {len(pids)} etcd processes {pids}")
                for p in pids:
                    if ppid_of(p) != h.proc.pid:  # type: ignore[union-attr]
                        raise ScenarioError(f"{h.node}: etcd {p} has parent {ppid_of(p)}, not the controller "
                                            f"{h.proc.pid}")  # type: ignore[union-attr]
                return True

            try:
                wait_until(clean, 15, f"{h.node}: no orphan etcd", interval=0.5)
            except ScenarioError as e:
                self.violation(str(e))
        # anything else of ours anywhere on the machine (e.g. an etcd that left the netns? impossible,
        # but cheap to check): etcd processes whose data dir is under this scenario's folder
        mine = str(self.outdir)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                pid = int(entry)
                argv = cmdline(pid)
                if argv and os.path.basename(argv[0]) == "etcd" and running(pid) and any(
                        a.startswith("--data-dir=" + mine) for a in argv):
                    owner = next((h for h in self.hosts.values() if f"--data-dir={h.etcd_dir}" in argv), None)
                    if owner is None or expect_none or not owner.alive():
                        self.violation(f"orphan etcd pid {pid}: {' '.join(argv[:3])}")

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


OWNER = ".owner"  # {"pid", "start"} of the process whose run uses the folder


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


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


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120]


def prune_for_artifacts(root: Path) -> None:
    """Keep logs, configs and state; drop etcd's wal/snap files (64 MB preallocated each)."""
    for d in root.glob("*/data/etcd*"):
        if d.is_dir():
            for sub in ("member/wal", "member/snap"):
                shutil.rmtree(d / sub, ignore_errors=True)
    shutil.rmtree(root / "bed", ignore_errors=True)


# ---- the records CLI (issue 4; being written in parallel) ---------------------------------

_records_cli: bool | None = None


def records_cli_available() -> bool:
    """True once `etcdward get etcdmembers` exists (probed once per process)."""
    global _records_cli
    if _records_cli is None:
        p = subprocess.run([sys.executable, "-m", "etcdward", "get", "etcdmembers", "--help"],
                           capture_output=True, text=True, timeout=60)
        _records_cli = p.returncode == 0
    return _records_cli


def leave_cli_available() -> bool:
    """`etcdward patch etcdmember NAME --leave` and `etcdward reset` both exist."""
    checks = [["patch", "etcdmember", "--help"], ["reset", "--help"]]
    for args in checks:
        p = subprocess.run([sys.executable, "-m", "etcdward", *args], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            return False
    return True


def get_records(h: Host) -> list[dict[str, Any]]:
    p = h.cli("get", "etcdmembers", "-o", "json")
    if p.returncode != 0:
        raise ScenarioError(f"{h.node}: get etcdmembers failed: {p.stderr.strip()[-300:]}")
    doc = json.loads(p.stdout)
    return list(doc.get("items", []))


def joined(record: dict[str, Any]) -> bool | None:
    for c in (record.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Joined":
            return {"True": True, "False": False}.get(str(c.get("status")))
    return None

