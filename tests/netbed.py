"""Multi-host test bed made of Linux namespaces (Python port of shared/reference/netbed.sh).

Each node (``ctl``, ``n1``..``nN``) is a network namespace ``<prefix>-<node>`` plus a persistent
UTS namespace (own hostname) and mount namespace (own /etc/hosts and /etc/resolv.conf) kept
alive by ns files under the bed's state dir, so no long-lived helper process is needed.
All nodes hang off bridge ``br0`` in a private hub namespace ``<prefix>-hub``.  The root
namespace gets no interface, route, sysctl or iptables rule, and nothing can leave the machine:
the hub has no uplink, nodes have no default route, DNS points at 127.0.0.1 inside the node.

    with NetBed(3, workdir=tmp_path) as bed:
        p = bed.popen("n1", ["etcd", "--name", "n1", ...])    # p.pid is etcd itself
        bed.partition("n1"); bed.heal("n1")

Needs root.  Plain module on purpose (no pytest import) so scripts can use it too.
"""
from __future__ import annotations

import atexit
import fnmatch
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .netbed_teardown import NetBedError, _bed_namespaces, _cmd, _netns_names, _pids_in, _proc_start, _teardown

# One state dir per bed, <STATE_ROOT>/<prefix>/, marked by owner.json (creator pid + start time).
STATE_ROOT = Path(os.path.realpath("/tmp")) / "etcdward-netbed"
DOMAIN = "cluster.test"
CHAIN = "NETBED"
MARKER = "owner.json"
_TOOLS = ("ip", "iptables", "nsenter", "unshare", "mount", "umount", "findmnt", "hostname")
_LIVE: set["NetBed"] = set()  # open beds of this process, closed by atexit / the SIGTERM handler

# Hygiene: no IPv6 router solicitations / DAD chatter.  Runs inside the target netns
# (/proc/sys/net follows the writer's netns), tolerates kernels without IPv6.
_NO_IPV6 = ("for f in all default; do { echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; } "
            "2>/dev/null || true; done\n")
_HUB_SCRIPT = _NO_IPV6 + "ip link set lo up\nip link add br0 type bridge\nip link set br0 up\n"
# $1 node, $2 ip/24, $3 hub netns.  eth0 is created after the sysctl so it inherits it.
_NODE_NET_SCRIPT = _NO_IPV6 + """ip link set lo up
ip link add eth0 type veth peer name "v-$1" netns "$3"
ip -n "$3" link set "v-$1" master br0 up
ip addr add "$2" dev eth0
ip link set eth0 up
"""
# $1 hostname, $2 hosts file, $3 resolv.conf.  Runs in the node's fresh (private) mount ns.
# The ns is a copy of the root mount table, including nsfs mounts (/run/netns/*, other nodes'
# and other beds' ns files); drop those copies, or this node would keep those namespaces alive
# after their owners delete them.  Unmounting a copy in a private ns never affects the host.
_NODE_MNT_SCRIPT = """hostname "$1"
mount --bind "$2" /etc/hosts
mount --bind "$3" /etc/resolv.conf
findmnt -rn -t nsfs -o TARGET | while read -r m; do umount -l "$m" 2>/dev/null || true; done
"""


def netbed_available() -> tuple[bool, str]:
    """(True, "") if beds can be created here, else (False, why) -- for pytest skips."""
    if not sys.platform.startswith("linux"):
        return False, "network namespaces need Linux"
    if os.geteuid() != 0:
        return False, "netbed needs root"
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        return False, "missing tools: " + ", ".join(missing)
    # root inside an unprivileged container has no CAP_SYS_ADMIN: probe instead of guessing
    probe = subprocess.run(["unshare", "--net", "--uts", "--mount", "true"],
                           capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        return False, f"cannot create namespaces: {probe.stderr.strip()}"
    return True, ""


def cleanup_stale(prefix_glob: str = "ew") -> list[str]:
    """Tear down beds left by crashed runs: marker present and its creating process dead.

    `prefix_glob` is an fnmatch pattern; without wildcards it is a prefix ("ew" == "ew*").
    Returns the prefixes removed.  Beds of live processes and dirs without marker are kept.
    """
    pattern = prefix_glob if any(c in prefix_glob for c in "*?[") else prefix_glob + "*"
    removed = []
    if not STATE_ROOT.is_dir():
        return removed
    for d in sorted(STATE_ROOT.iterdir()):
        if not d.is_dir() or not fnmatch.fnmatchcase(d.name, pattern):
            continue
        try:
            info = json.loads((d / MARKER).read_text())
        except (OSError, ValueError):
            continue
        if info.get("prefix") != d.name or _proc_start(info["pid"]) == info.get("start"):
            continue  # foreign file, or owner still alive (same pid AND same start time)
        _teardown(d.name, d)
        removed.append(d.name)
    return removed


def close_all() -> None:
    """Close every open bed of this process (atexit / SIGTERM)."""
    for bed in list(_LIVE):
        try:
            bed.close()
        except Exception as e:  # keep going: other beds still need cleanup
            print(f"netbed: cleanup of {bed.prefix} failed: {e}", file=sys.stderr)


def install_sigterm_cleanup():
    """Install a SIGTERM handler that closes all beds, then behaves like the previous handler
    (default: die by SIGTERM).  Call from the main thread; returns the previous handler."""
    prev = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        close_all()
        if callable(prev):
            prev(signum, frame)
        elif prev != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)
    return prev


class NetBed:
    """A bed of `n_nodes` nodes n1..nN plus `ctl` (for test clients).  See module doc."""

    def __init__(self, n_nodes: int = 3, workdir: Path | None = None, prefix: str | None = None):
        if not 1 <= n_nodes <= 200:
            raise ValueError("n_nodes must be 1..200")
        self.prefix = prefix or "ew" + secrets.token_hex(3)
        if not re.fullmatch(r"[a-z][a-z0-9]{1,11}", self.prefix):
            raise ValueError(f"bad prefix {self.prefix!r}: [a-z][a-z0-9]{{1,11}}")
        # Each bed is sealed off (own hub, no routes out), so two beds sharing a subnet cannot
        # interfere; the random octet only helps telling beds apart in logs.
        self.net = f"10.251.{random.randrange(256)}"
        self.domain = DOMAIN
        self.nodes = [f"n{k}" for k in range(1, n_nodes + 1)]
        self.state_dir = STATE_ROOT / self.prefix
        self._ns_dir = self.state_dir / "ns"
        self._procs: list[subprocess.Popen] = []
        self._hosts_ino: dict[str, int] = {}
        self._owner_pid = os.getpid()
        self._closed = False
        if _netns_names(self.prefix):
            raise NetBedError(f"netns with prefix {self.prefix} exist; not ours, not touching")
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        # mkdir is the atomic claim of the prefix; if it fails we own nothing, so clean nothing
        self.state_dir.mkdir()
        _LIVE.add(self)
        try:
            marker = {"pid": self._owner_pid, "start": _proc_start(self._owner_pid),
                      "prefix": self.prefix, "created": time.time()}
            (self.state_dir / MARKER).write_text(json.dumps(marker))
            self.workdir = Path(workdir) if workdir is not None else self.state_dir / "work"
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._create()
        except BaseException:
            self.close()  # half-built bed: remove whatever exists
            raise

    # ---- construction ----------------------------------------------------------------
    def _create(self) -> None:
        ns_dir = str(self._ns_dir)
        self._ns_dir.mkdir()
        # persistent mount-ns files must not sit on a shared mount (testbed.md pitfall 3)
        _cmd(["mount", "--bind", ns_dir, ns_dir])
        _cmd(["mount", "--make-private", ns_dir])
        hub = self._netns("hub")
        _cmd(["ip", "netns", "add", hub])
        _cmd(["nsenter", f"--net=/run/netns/{hub}", "sh", "-ec", _HUB_SCRIPT])
        hosts = self.default_hosts()
        for node in ["ctl", *self.nodes]:
            self._add_node(node, hosts)

    def _add_node(self, node: str, hosts: str) -> None:
        ns, files = self._netns(node), self.state_dir / "nodes" / node
        files.mkdir(parents=True)
        (files / "hosts").write_text(hosts)
        (files / "resolv.conf").write_text("nameserver 127.0.0.1\n")  # DNS never leaves the node
        self._hosts_ino[node] = (files / "hosts").stat().st_ino
        _cmd(["ip", "netns", "add", ns])
        _cmd(["nsenter", f"--net=/run/netns/{ns}", "sh", "-ec", _NODE_NET_SCRIPT, "sh",
              node, f"{self.ip(node)}/24", self._netns("hub")])
        uts, mnt = self._ns_file(node, "uts"), self._ns_file(node, "mnt")
        uts.touch()
        mnt.touch()
        _cmd(["unshare", f"--uts={uts}", f"--mount={mnt}", "--propagation", "private",
              "sh", "-ec", _NODE_MNT_SCRIPT, "sh",
              node, str(files / "hosts"), str(files / "resolv.conf")])

    # ---- naming ------------------------------------------------------------------------
    def _netns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def _ns_file(self, node: str, kind: str) -> Path:
        return self._ns_dir / f"{node}.{kind}"

    def _check(self, node: str, live: bool = True) -> None:
        if node != "ctl" and node not in self.nodes:
            raise ValueError(f"no node {node!r} in bed {self.prefix} (nodes: ctl, {self.nodes})")
        if live and self._closed:
            raise NetBedError(f"bed {self.prefix} is closed")

    def ip(self, node: str) -> str:
        self._check(node, live=False)
        return f"{self.net}.2" if node == "ctl" else f"{self.net}.{10 + int(node[1:])}"

    def default_hosts(self) -> str:
        """localhost plus 'IP nK.cluster.test nK' for every node (hostname -f = FQDN)."""
        lines = ["127.0.0.1\tlocalhost"]
        lines += [f"{self.ip(n)}\t{n}.{self.domain}\t{n}" for n in self.nodes]
        return "\n".join(lines) + "\n"

    # ---- running things inside nodes ---------------------------------------------------
    def nsenter_args(self, node: str, wd: str | os.PathLike | None = None) -> list[str]:
        """Prefix (ending in '--') that runs the appended argv inside `node` (net+uts+mnt).
        Entering a mount ns resets the cwd to '/', so pass `wd` to keep a working dir."""
        self._check(node)
        args = ["nsenter", f"--net=/run/netns/{self._netns(node)}",
                f"--uts={self._ns_file(node, 'uts')}", f"--mount={self._ns_file(node, 'mnt')}"]
        if wd is not None:
            args.append(f"--wd={os.fspath(wd)}")
        return args + ["--"]

    def popen(self, node: str, argv: list[str], **kw) -> subprocess.Popen:
        """Start argv inside `node`.  nsenter execs (no fork without a pid ns), so .pid is the
        real process.  Tracked: close() kills and reaps it.  cwd= is honoured inside the node."""
        kw.setdefault("stdin", subprocess.DEVNULL)  # daemons must not eat the test's stdin
        proc = subprocess.Popen(self.nsenter_args(node, kw.get("cwd") or os.getcwd()) + list(argv), **kw)
        self._procs.append(proc)
        return proc

    def run(self, node: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """subprocess.run(argv) inside `node` (same keyword arguments)."""
        return subprocess.run(self.nsenter_args(node, kw.get("cwd") or os.getcwd()) + list(argv), **kw)

    def pids(self, node: str) -> list[int]:
        """PIDs of processes in `node`'s network namespace."""
        self._check(node)
        out = _cmd(["ip", "netns", "pids", self._netns(node)]).stdout
        return [int(p) for p in out.split()]

    def kill9(self, pid: int) -> None:
        """SIGKILL a process of this bed (and reap it if it is our child).  Refuses PIDs that
        live outside the bed; a PID that is already gone is fine."""
        for proc in self._procs:
            if proc.pid == pid:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=5)
                return
        if pid not in _pids_in(self._ns_ids()):
            if _proc_start(pid) is None:
                return
            raise ValueError(f"pid {pid} is not inside bed {self.prefix}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # ---- node identity and faults ------------------------------------------------------
    def set_hostname(self, node: str, name: str) -> None:
        """Set `node`'s kernel hostname; running processes see it at once."""
        self._check(node)
        _cmd(["nsenter", f"--uts={self._ns_file(node, 'uts')}", "hostname", name])

    def write_hosts(self, node: str, text: str) -> None:
        """Replace `node`'s /etc/hosts content.  The file is bind-mounted, so it is rewritten
        in place (same inode); a replaced file (new inode, e.g. by mv) is re-bound."""
        self._check(node)
        src = self.state_dir / "nodes" / node / "hosts"
        with open(src, "w") as f:  # O_TRUNC keeps the inode the bind mount points at
            f.write(text)
        ino = src.stat().st_ino
        if ino != self._hosts_ino[node]:
            _cmd(["nsenter", f"--mount={self._ns_file(node, 'mnt')}", "sh", "-ec",
                  'umount /etc/hosts; mount --bind "$1" /etc/hosts', "sh", str(src)])
            self._hosts_ino[node] = ino

    def partition(self, node: str, peers: list[str] | None = None) -> None:
        """Silently drop traffic node<->peers (default: all other n-nodes; ctl stays reachable).
        Rules live in `node`'s own netns (chain NETBED hooked into INPUT and OUTPUT); calls add up."""
        self._check(node)
        peers = [n for n in self.nodes if n != node] if peers is None else list(peers)
        script = [f"iptables -w -N {CHAIN} 2>/dev/null || true",
                  f"for h in INPUT OUTPUT; do iptables -w -C $h -j {CHAIN} 2>/dev/null"
                  f" || iptables -w -I $h -j {CHAIN}; done"]
        for peer in peers:
            ip = self.ip(peer)
            script += [f"iptables -w -A {CHAIN} -s {ip} -j DROP",
                       f"iptables -w -A {CHAIN} -d {ip} -j DROP"]
        _cmd(["nsenter", f"--net=/run/netns/{self._netns(node)}", "sh", "-ec", "\n".join(script)])

    def heal(self, node: str) -> None:
        """Remove all of `node`'s partition rules."""
        self._check(node)
        _cmd(["nsenter", f"--net=/run/netns/{self._netns(node)}",
              "iptables", "-w", "-F", CHAIN], check=False)  # no chain = nothing to heal

    # ---- cleanup -----------------------------------------------------------------------
    def _ns_ids(self) -> set[tuple[int, int]]:
        return _bed_namespaces(self.prefix, self.state_dir)[2]

    def close(self) -> None:
        """Kill every process in the bed, delete all its namespaces, mounts and state.
        Idempotent; safe to re-enter (e.g. SIGTERM during close); no-op in forked children."""
        if self._closed or os.getpid() != self._owner_pid:
            return
        _teardown(self.prefix, self.state_dir, self._procs)
        self._closed = True
        _LIVE.discard(self)

    def __enter__(self) -> "NetBed":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        return f"NetBed({self.prefix}, {self.net}.0/24, nodes={self.nodes}, closed={self._closed})"


atexit.register(close_all)  # no-op unless beds are still open at interpreter exit
