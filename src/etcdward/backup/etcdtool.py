"""etcd's own tools, run as child processes: the local etcd version, and `snapshot restore` /
`snapshot status` with `etcdutl` (3.5+) or, where there is none, `etcdctl` (3.4, ETCDCTL_API=3).

The tool is looked up next to the etcd binary first (so that a configured or downloaded etcd
is restored with its own tool), then on PATH. Whether it can bump revisions
(`--bump-revision N --mark-compacted`, etcdutl of 3.5.x and later) is read from its --help.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import Permanent

# etcd's recovery guide: 1e9 covers about a week at < 1500 writes/s.
BUMP_REVISION = 1_000_000_000
RUN_TIMEOUT = 600.0


class EtcdToolError(Permanent):
    """etcd's tool is missing or failed; the message names it and quotes its output."""


def version_of(binary: str) -> str:
    """`etcd --version` -> "3.4.23"."""
    out = _run([binary, "--version"], timeout=30.0).stdout
    m = re.search(r"etcd Version:\s*(\S+)", out)
    if not m:
        raise EtcdToolError(f"cannot tell the version of {binary}: `--version` printed {out.strip()[:200]!r}")
    return m.group(1)


def minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)", version.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def newer_minor(archived: str, local: str) -> str | None:
    """Why a snapshot of etcd `archived` cannot be restored with etcd `local`, or None."""
    a, b = minor(archived), minor(local)
    if a is None or b is None:
        return f"cannot compare etcd versions {archived!r} (archive) and {local!r} (local etcd)"
    if a > b:
        return (f"the snapshot comes from etcd {archived}, newer than the local etcd {local}; an etcd minor version "
                "cannot read a newer one's data: restore with etcd "
                f"{a[0]}.{a[1]} or later (spec.storage.etcd.binary or $ETCDWARD_ETCD_BIN)")
    return None


@dataclass(frozen=True)
class Tool:
    path: str
    api_env: bool  # etcdctl needs ETCDCTL_API=3 (3.4)
    can_bump: bool

    @property
    def name(self) -> str:
        return Path(self.path).name

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ETCDCTL_API": "3"} if self.api_env else None
        return _run([self.path, *args], env=env)


def find_tool(etcd_binary: str) -> Tool:
    """etcdutl next to etcd, etcdutl on PATH, etcdctl next to etcd, etcdctl on PATH."""
    here = Path(etcd_binary).resolve().parent
    for name in ("etcdutl", "etcdctl"):
        for candidate in (str(here / name), shutil.which(name)):
            if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                api = name == "etcdctl"
                helptext = _run([candidate, "snapshot", "restore", "--help"],
                                env={**os.environ, "ETCDCTL_API": "3"} if api else None, check=False)
                return Tool(candidate, api, "--bump-revision" in helptext.stdout + helptext.stderr)
    raise EtcdToolError(f"neither etcdutl nor etcdctl found next to {etcd_binary} or on PATH: install etcd-client "
                        "(it restores etcd snapshots)")


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EtcdToolError(f"cannot run {argv[0]}: {e}") from None
    if check and p.returncode != 0:
        tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
        raise EtcdToolError(f"`{Path(argv[0]).name} {' '.join(argv[1:3])}` failed (exit {p.returncode}): {tail}")
    return p


# -- IDs of a restored member ------------------------------------------------------------------
def member_id(peer_urls: list[str], cluster_token: str) -> int:
    """The member ID etcd gives a member at bootstrap/restore (membership.computeMemberId)."""
    digest = hashlib.sha1("".join(sorted(peer_urls)).encode() + cluster_token.encode()).digest()
    return int.from_bytes(digest[:8], "big")


def cluster_id(member_ids: list[int]) -> int:
    """The cluster ID etcd derives from its initial members (membership.RaftCluster.genID)."""
    digest = hashlib.sha1(b"".join(struct.pack(">Q", m) for m in sorted(member_ids))).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass(frozen=True)
class Restored:
    member_id: str  # lowercase hex
    cluster_id: str
    bumped: bool


def restore(tool: Tool, snapshot: Path, dest: Path, name: str, peer_url: str, cluster_token: str) -> Restored:
    """Restore snapshot into dest (which must not exist) as the one member `name` at peer_url of
    a new cluster; revisions bumped where the tool can. The IDs etcd chose are computed and,
    where the tool prints them, checked against what it printed."""
    args = ["snapshot", "restore", str(snapshot), "--name", name, "--data-dir", str(dest),
            "--initial-cluster", f"{name}={peer_url}", "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster-token", cluster_token]
    if tool.can_bump:
        args += ["--bump-revision", str(BUMP_REVISION), "--mark-compacted"]
    p = tool.run(*args)
    mid = member_id([peer_url], cluster_token)
    cid = cluster_id([mid])
    for line in (p.stdout + p.stderr).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        said = entry.get("cluster-id") if isinstance(entry, dict) else None
        if said and said != format(cid, "x"):
            raise EtcdToolError(f"{tool.name} restored cluster {said}, not the expected {cid:x}; "
                                f"not using {dest}")
    return Restored(format(mid, "x"), format(cid, "x"), tool.can_bump)


def snapshot_revision(tool: Tool, snapshot: Path) -> int:
    """The revision in a snapshot file, as `snapshot status` reads it (it checks the file too)."""
    p = tool.run("snapshot", "status", str(snapshot), "-w", "json")
    try:
        return int(json.loads(p.stdout)["revision"])
    except (ValueError, KeyError, TypeError):
        raise EtcdToolError(f"`{tool.name} snapshot status` printed no revision: {p.stdout.strip()[:200]!r}") from None
