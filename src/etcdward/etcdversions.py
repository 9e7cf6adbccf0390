"""Which etcd binary this node may run, decided before etcd starts: never a skipped minor
version, never below what this member last ran or below its cluster's version.

    Version            "3.5.30" <-> (3, 5, 30)
    binary_version()   what `etcd --version` says ("etcd Version: 3.4.23")
    start_refusal()    pure: why running `new` on this data dir is refused, or None
    cluster_version()  etcd's own /version endpoint ({"etcdserver", "etcdcluster"})
    skew()             pure: the members' versions differ by more than one minor

The versions a member ran are pinned in state/etcd-version.json (localstate) after each
successful start, with the cluster version etcd reported then; no bbolt reader is needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
from collections.abc import Mapping
from typing import NamedTuple

from . import localstate
from .errors import Permanent
from .etcdlogwatch import EtcdLogWatch
from .heartbeats import ETCD_CALL, Heartbeats
from .paths import DataDir


class Version(NamedTuple):
    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def minor_str(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> Version | None:
        m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?", text.strip())
        return cls(int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


# The oldest etcd etcdward runs: learners (member add --learner, promote) came in 3.4.
OLDEST = Version(3, 4, 0)

# Upgrading into a minor version only from these versions on (else: the same minor first).
# 3.6 from < 3.5.26 can keep "zombie members" and fail on learners not persisted (k3s#13485,
# etcd 3.5.20 and 3.5.26 fixes); see README "Supported etcd versions".
UPGRADE_FROM: Mapping[tuple[int, int], Version] = {
    (3, 5): Version(3, 4, 0),
    (3, 6): Version(3, 5, 26),
    (3, 7): Version(3, 6, 0),
}


class EtcdVersionRefused(Permanent):
    """This etcd binary must not run on this data dir; the message says why and what to do."""


def parse_version_output(out: str) -> Version | None:
    m = re.search(r"^etcd Version:\s*(\S+)", out, re.MULTILINE)
    return Version.parse(m[1]) if m else None


def binary_version(binary: str) -> Version:
    """The version of the etcd binary; asked once per file (a controller checks it twice while
    it starts, and each `etcd --version` is a process start on the way to the first join)."""
    try:
        st = os.stat(binary)
        stamp: tuple[str, int, int] | None = (os.path.realpath(binary), st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    if stamp is not None and stamp in _VERSIONS:
        return _VERSIONS[stamp]
    v = _ask_version(binary)
    if stamp is not None:
        _VERSIONS[stamp] = v
    return v


_VERSIONS: dict[tuple[str, int, int], Version] = {}


def _ask_version(binary: str) -> Version:
    try:
        p = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        out = p.stdout + p.stderr
    except (OSError, subprocess.SubprocessError) as e:
        out = str(e)
    v = parse_version_output(out)
    if v is None:
        first = (out.strip().splitlines() or ["(no output)"])[0][:200]
        raise EtcdVersionRefused(f"cannot tell which etcd version {binary} is (`{binary} --version` said: {first}); "
                                 "point spec.storage.etcd.binary or $ETCDWARD_ETCD_BIN at a real etcd")
    return v


def start_refusal(new: Version, last_ran: Version | None, cluster: Version | None, binary: str = "etcd") -> str | None:
    """Why `new` must not run on a data dir whose member last ran `last_ran` in a cluster at
    version `cluster` (None: not known, e.g. a fresh data dir), or None when it may."""
    what = f"etcd {new} ({binary})"
    if new < OLDEST:
        return f"{what} is too old: etcdward needs etcd {OLDEST.minor_str} or newer (learners)"
    if cluster is not None and (new.major, new.minor) < (cluster.major, cluster.minor):
        return (f"{what} is below this cluster's version {cluster.minor_str} (recorded in this data dir); etcd cannot "
                f"be downgraded below the cluster version: run etcd {cluster.minor_str} or newer")
    if last_ran is None:
        return None
    if new < last_ran:
        return (f"{what} is older than etcd {last_ran}, which this member last ran; downgrades are refused: point "
                f"spec.storage.etcd.binary (or $ETCDWARD_ETCD_BIN) at etcd {last_ran} or newer")
    if new.major != last_ran.major or new.minor > last_ran.minor + 1:
        nxt = f"{last_ran.major}.{last_ran.minor + 1}"
        return (f"{what} would skip a minor version: this member last ran etcd {last_ran}; upgrade one minor version "
                f"at a time (first to the latest {nxt}.x on every member)")
    floor = UPGRADE_FROM.get((new.major, new.minor))
    if new.minor == last_ran.minor + 1 and floor is not None and last_ran < floor:
        return (f"{what}: an upgrade to {new.minor_str} is safe only from etcd {floor} on, and this member last ran "
                f"etcd {last_ran}; upgrade every member to etcd {floor} or a later {floor.minor_str}.x first")
    return None


def skew(versions: Mapping[str, str]) -> str | None:
    """A warning when the members' versions (name -> version) differ by more than one minor."""
    parsed = {n: v for n, raw in versions.items() if (v := Version.parse(raw)) is not None}
    if len(parsed) < 2:
        return None
    lo, hi = min(parsed.values()), max(parsed.values())
    if lo.major == hi.major and hi.minor - lo.minor <= 1:
        return None
    listing = ", ".join(f"{n} {v}" for n, v in sorted(parsed.items()))
    return (f"members run etcd versions more than one minor apart ({listing}); etcd supports one minor of "
            "difference during a rolling upgrade: upgrade the old members next")


async def cluster_version(data: DataDir, client_port: int, timeout: float = 5.0) -> tuple[str, str]:
    """(server version, cluster version) from the local etcd's GET /version, over its client
    TLS (etcd reports "not_decided" until the cluster version is set)."""
    ca, _ = data.etcd_cert("ca")
    crt, key = data.etcd_cert("client")
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(crt), str(key))
    ctx.check_hostname = False

    async def get() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", client_port, ssl=ctx)
        try:
            writer.write(b"GET /version HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    raw = await asyncio.wait_for(get(), timeout)
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return str(body.get("etcdserver", "")), str(body.get("etcdcluster", ""))


def check_start(data: DataDir, binary: str) -> Version:
    """The binary's version if it may run on this data dir; EtcdVersionRefused (nothing changed)
    if not. The pin counts only while the member's data is there (after a reset it is gone)."""
    new = binary_version(binary)
    last, cluster = localstate.read_etcd_versions(data) if data.etcd_db.is_file() else (None, None)
    why = start_refusal(new, Version.parse(last or ""), Version.parse(cluster or ""), binary)
    if why:
        raise EtcdVersionRefused(why)
    return new


async def pin_after_start(data: DataDir, client_port: int, running: Version) -> str | None:
    """Pin the version this member runs and the cluster version etcd reports now (kept as it
    was when etcd does not say); returns the cluster version, or None if not known."""
    try:
        _, cluster = await cluster_version(data, client_port)
    except (OSError, ValueError, IndexError, asyncio.TimeoutError):
        cluster = ""
    known = cluster if Version.parse(cluster) else None
    localstate.pin_etcd_versions(data, str(running), known)
    return known


LOGGED_EVERY = 300.0  # with a log watch: the safety net's look at /version
LEAST_GAP = 2.0  # between two looks, however often etcd writes to its log


async def keep_pinned(data: DataDir, client_port: int, running: Version, every: float = 30.0,
                      heartbeats: Heartbeats | None = None, log_watch: EtcdLogWatch | None = None) -> None:
    """The cluster version moves up once every member runs a newer minor: keep the pin current.
    etcd logs the change on every member ("updated the cluster version from 3.4 to 3.5"), so with
    a log watch this looks after the log moved (at least LEAST_GAP apart) and every
    LOGGED_EVERY seconds; without one, every `every` seconds (an HTTPS request and a TLS
    handshake each time)."""
    pinned, delay, looked = None, LEAST_GAP, False  # etcd decides the cluster version a moment after it starts
    safety = every if log_watch is None else LOGGED_EVERY
    with (heartbeats or Heartbeats()).loop("etcd-version", every=safety, work=ETCD_CALL) as hb:
        while True:
            seen = log_watch.version if log_watch is not None else 0
            await asyncio.sleep(delay)
            if log_watch is not None and log_watch.version == seen and looked:
                await log_watch.moved_within(seen, safety - delay)
            hb.beat()
            delay, looked = (LEAST_GAP if log_watch is not None else every), True
            try:
                _, raw = await cluster_version(data, client_port)
            except (OSError, ValueError, IndexError, asyncio.TimeoutError):
                continue
            if Version.parse(raw) and raw != pinned:
                localstate.pin_etcd_versions(data, str(running), raw)
                pinned = raw
