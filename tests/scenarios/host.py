"""One node of the bed and the controller that runs on it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etcdward.paths import DataDir
from etcdward.procs import ControllerProcess, cmdline, deep_merge, running

from .common import (
    CTLWRAP,
    ETCDCTL,
    LEASE_TTL,
    TOLERATE_LEASE_HANG,
    ScenarioError,
    _ok,
    is_etcd,
    wait_until,
)

if TYPE_CHECKING:
    from .harness import World


class Host(ControllerProcess):
    """One node of the bed and the controller that runs on it (ctlwrap.py: SIGUSR1 dumps stacks)."""

    launcher = (sys.executable, str(CTLWRAP))
    stop_timeout = 40.0

    def __init__(self, world: "World", node: str) -> None:
        self.world = world
        self.bed = world.bed
        self.node = node
        self.ip = self.bed.ip(node)
        self.dir = world.outdir / node
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_root = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.extra_config: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Host({self.node}, {self.ip}, {'up' if self.alive() else 'down'})"

    # -- paths ----------------------------------------------------------------------------
    @property
    def data(self) -> DataDir:
        return DataDir(self.data_root)

    @property
    def config_file(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def log_file(self) -> Path:
        return self.dir / "controller.log"

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
        deep_merge(cfg, self.extra_config)
        return cfg

    def start(self, token: str | None = None, env: dict[str, str] | None = None) -> None:
        if self.alive():
            raise ScenarioError(f"{self.node}: controller already running (pid {self.proc.pid})")  # type: ignore[union-attr]
        self.write_config(self.config(), sort_keys=False)
        self.starts += 1
        self.launch(self.controller_argv(token), env=env,
                    banner=f"\n=== harness: start #{self.starts} {'with' if token else 'without'} token "
                           f"at {time.strftime('%H:%M:%S')}\n")
        self.world.event(f"{self.node}: start #{self.starts} (pid {self.proc.pid}, "  # type: ignore[union-attr]
                         f"{'token' if token else 'no token'})")

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Inside this node, tracked by the bed (its close() kills what is left)."""
        return self.bed.popen(self.node, argv, cwd=str(self.dir), **kw)

    def etcd_pids_in_node(self) -> list[int]:
        """Every live etcd process in this node's network namespace."""
        return [p for p in self.bed.pids(self.node) if running(p) and is_etcd(p)]

    def kill9(self, mode: str = "both") -> None:
        """SIGKILL, as a crash would.  mode "both": controller and etcd (machine crash);
        "controller": the controller only -- its etcd must die by itself (PDEATHSIG)."""
        etcd = self.etcd_pid()
        self.kill_controller()
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
        """SIGKILL this host's etcd.  Not bed.kill9(): a process that is exiting (e.g. by
        PDEATHSIG a moment ago) has already dropped its namespaces, so netbed no longer sees it
        inside the bed and refuses it.  The guard here is the cmdline: our own data dir."""
        if f"--data-dir={self.etcd_dir}" not in cmdline(pid):
            return  # gone, or the PID was reused by something that is not ours
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_timed_out(self, timeout: float) -> None:
        """A controller that does not stop in time is a violation (then stop() kills it)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)  # ctlwrap: task stacks into the log
        time.sleep(1.0)
        dump = self.log().rsplit("=== harness: SIGUSR1", 1)[-1]
        msg = (f"{self.node}: controller did not stop within {timeout:.0f}s of SIGTERM (task stacks at the "
               f"end of {self.log_file})")
        if TOLERATE_LEASE_HANG and "Task cancelling name='lease-" in dump and "KeptLease._keep" in dump:
            self.world.known_bug(msg + ": the KeptLease cancellation bug (tests/test_tasks.py)")
        else:
            self.world.violation(msg)

    def stop(self, timeout: float | None = None) -> int | None:
        rc = super().stop(timeout)
        if self.proc is not None:
            self.world.event(f"{self.node}: stopped (rc {rc})")
        return rc

    def restart(self, token: str | None = None, how: str = "term") -> None:
        """Stop (how="term": SIGTERM; "kill": kill -9 of controller and etcd) and start again."""
        if how == "kill":
            self.kill9("both")
        else:
            self.stop()
        self.start(token)

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

    def kubectl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """The real kubectl inside the node, against this node's kube API (a kubeconfig from
        `etcdward kubeconfig`, its own HOME so no discovery cache is shared)."""
        kc = self.dir / "kubeconfig"
        if not kc.exists():
            p = self.cli("kubeconfig")
            if p.returncode != 0:
                return p
            kc.write_text(p.stdout)
            kc.chmod(0o600)
        binary = os.environ.get("ETCDWARD_KUBECTL") or shutil.which("kubectl") or "kubectl"
        return self.run([binary, f"--kubeconfig={kc}", *args], timeout=timeout,
                        env={"HOME": str(self.dir / "kube-home")})

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

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log().splitlines() if needle in line]
