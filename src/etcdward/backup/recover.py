"""`etcdward recover`: quorum-loss recovery on a surviving node whose controller is stopped.

Under the data-dir lock, with etcd listening on loopback only (free ports on 127.0.0.1, as
k3s's --cluster-reset does, so no peer reaches it while its membership changes):

  1. survey   etcd started normally; its own peer listener says which members it knows and
              the cluster ID (peerprobe); every other member's peer URL is asked whether it
              still answers for this cluster. Refused (unless force) when the members that
              answer, with this one, still make a quorum: the cluster is not lost (and when
              they make one without this node, recovering would split the brain).
  2. confirm  the caller's callback (a prompt, or --yes)
  3. backup   etcd stopped, member/snap/db copied with its sha256 appended (what etcd's snapshot
              stream is) into a verified archive in <data-dir>/backups
  4. recover  etcd run once with --force-new-cluster until a linearizable read passes and it is
              the only member, then stopped: the node is ready to start normally, same cluster
              ID and member ID, all data kept.

Members removed this way that come back with their old data are told by etcd that they were
removed (`the member has been permanently removed`): their controller writes a tombstone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..config import Config
from ..errors import Permanent
from ..paths import DataDir
from ..peerprobe import PeerAnswer, PeerMember, ask, ask_all, peer_tls
from ..procs import free_port
from ..store import Member, local_store
from ..store import errors as E
from ..supervisor import LaunchPlan, Supervisor, etcd_args, last_run_output
from .archive import CHUNK, Manifest
from .etcdtool import find_tool, snapshot_revision, version_of
from .take import archive_part, pki_files, temp_file, write_verified

START_TIMEOUT = 60.0
SETTLE = 0.5  # seconds between the two reads of the member list that must agree
T = TypeVar("T")


class RecoverRefused(Permanent):
    """Recovery is not done; the message says why and what to do."""


@dataclass(frozen=True)
class Survey:
    cluster_id: str
    me: PeerMember
    others: tuple[PeerMember, ...]
    answered: tuple[PeerMember, ...]  # others whose peer URL answers for this cluster

    @property
    def voters(self) -> int:
        return sum(1 for m in (self.me, *self.others) if not m.is_learner)

    @property
    def quorum(self) -> int:
        return self.voters // 2 + 1

    def refusal(self) -> str | None:
        """Why recovering would be wrong, or None."""
        voting = [m for m in self.answered if not m.is_learner]
        if not self.others:
            return f"this member ({self.me.name}) is the only member of cluster {self.cluster_id}: nothing to recover"
        names = ", ".join(f"{m.name or '(unstarted)'} ({m.peer_urls[0] if m.peer_urls else '?'})" for m in voting)
        if len(voting) >= self.quorum:
            return (f"{len(voting)} of the {self.voters} voting members still answer on their peer URLs: {names}; "
                    "they make a quorum without this node, and a recovered cluster beside them would split the brain. "
                    "Stop them for good first, or start this node's controller normally")
        if len(voting) + 1 >= self.quorum:
            return (f"the cluster still has a quorum with this node: {names} still answer(s) on the peer URL(s); "
                    "start this node's controller normally instead of recovering")
        return None


@dataclass(frozen=True)
class Result:
    survey: Survey
    archive: Path
    members: tuple[Member, ...]


def loopback_args(cfg: Config, data: DataDir, name: str, force: bool) -> tuple[list[str], int, int]:
    """etcd's usual arguments, but listening on free 127.0.0.1 ports only; (args, peer, client)."""
    peer, client = free_port(), free_port()
    override = {"listen-peer-urls": f"https://127.0.0.1:{peer}", "listen-client-urls": f"https://127.0.0.1:{client}",
                "advertise-client-urls": f"https://127.0.0.1:{client}"}
    args = [a for a in etcd_args(cfg, data, LaunchPlan(name=name)) if a[2:].split("=", 1)[0] not in override]
    args += [f"--{k}={v}" for k, v in override.items()]
    if force:
        args.append("--force-new-cluster=true")
    return args, peer, client


async def survey(data: DataDir, cfg: Config, binary: str, name: str, member_id: str | None) -> Survey:
    """Start etcd on loopback, read its member list from its own peer listener, stop it; ask
    the other members' peer URLs."""
    args, peer, _ = loopback_args(cfg, data, name, force=False)
    tls = peer_tls(data)
    sup = Supervisor(binary, args, data)
    await sup.start()
    try:
        own = await _settled(sup, f"https://127.0.0.1:{peer}", tls)
    finally:
        await sup.stop()
    me = next((m for m in own.members if m.id == member_id or (member_id is None and cfg.peer_url in m.peer_urls)),
              None)
    if me is None:
        raise RecoverRefused(f"this node's member (id {member_id or '?'}, {cfg.peer_url}) is not in the member list its "
                             "etcd data holds; it cannot recover this cluster")
    others = tuple(m for m in own.members if m.id != me.id)
    answers = await ask_all([m.peer_urls[0] for m in others if m.peer_urls], tls)
    answered = tuple(m for m in others if m.peer_urls and _answers_for(answers.get(m.peer_urls[0]), own.cluster_id))
    return Survey(own.cluster_id, me, others, answered)


async def _settled(sup: Supervisor, url: str, tls: ssl.SSLContext) -> PeerAnswer:
    """The member list its etcd data holds. etcd applies the committed entries of its WAL
    (membership changes among them: a learner added, then promoted) just after it starts, while
    its peer listener already answers, so one read can catch a voter still as a learner. Alone,
    the member cannot commit anything new: the list counts once two reads SETTLE s apart agree."""
    last: PeerAnswer | None = None
    for _ in range(int(START_TIMEOUT / SETTLE)):
        own = await _until(sup, lambda: ask(url, tls), "its peer listener to answer")
        if own == last:
            return own
        last = own
        await asyncio.sleep(SETTLE)
    raise RecoverRefused(f"the member list its etcd data holds kept changing for {START_TIMEOUT:.0f}s; see "
                         f"{sup.data.etcd_log}")


def _answers_for(answer: PeerAnswer | None, cluster_id: str) -> bool:
    return answer is not None and answer.cluster_id == cluster_id


async def _until(sup: Supervisor, probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    end = time.monotonic() + START_TIMEOUT
    while time.monotonic() < end:
        if not sup.alive():
            raise RecoverRefused(f"etcd exited while waiting for {what}; last lines of {sup.data.etcd_log}:\n"
                                 + last_run_output(sup.data.etcd_log))
        got = await probe()
        if got is not None:
            return got
        await asyncio.sleep(0.3)
    raise RecoverRefused(f"etcd did not get ready within {START_TIMEOUT:.0f}s (waiting for {what}); see "
                         f"{sup.data.etcd_log}")


def backup_db(data: DataDir, cfg: Config, binary: str, s: Survey, dest: Path) -> Path:
    """member/snap/db of the stopped etcd, with its sha256 appended, as a verified archive."""
    now = dt.datetime.now(dt.timezone.utc)
    tool = find_tool(binary)
    config_yaml, pki = cfg.to_yaml().encode(), pki_files(data)
    draft = Manifest(
        cluster_id=s.cluster_id, member_name=s.me.name, member_id=s.me.id, revision=0,
        etcd_version=version_of(binary), members=tuple(m.as_dict() for m in (s.me, *s.others)),
        created=now.isoformat(timespec="seconds").replace("+00:00", "Z"), snapshot_size=0, snapshot_sha256="")
    with temp_file(dest, ".etcdward-recover-snapshot-") as snap, \
            archive_part(dest, now, draft, config_yaml, pki) as part:
        digest = hashlib.sha256()
        with data.etcd_db.open("rb") as src, snap.open("wb") as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                part.write(chunk)
            out.write(digest.digest())
            part.write(digest.digest())
        manifest = dataclasses.replace(draft, revision=snapshot_revision(tool, snap), snapshot_size=part.digest.size,
                                       snapshot_sha256=part.digest.whole.hexdigest())
        return write_verified(dest, now, part, manifest, config_yaml, pki)


async def force_new_cluster(data: DataDir, cfg: Config, binary: str, name: str) -> tuple[Member, ...]:
    """Run etcd once with --force-new-cluster until it serves a linearizable read alone."""
    args, _, client = loopback_args(cfg, data, name, force=True)
    sup = Supervisor(binary, args, data)
    await sup.start()
    try:
        async with local_store(data, client, timeout=3.0) as store:
            async def ready() -> bool | None:
                try:
                    await store.ready()
                    return True
                except E.StoreError:
                    return None

            await _until(sup, ready, "a linearizable read")
            members = tuple(await store.members())
    finally:
        await sup.stop()
    if len(members) != 1:
        raise RecoverRefused(f"after --force-new-cluster etcd still lists {len(members)} members; see {data.etcd_log}")
    return members


async def recover(data: DataDir, cfg: Config, binary: str, name: str, member_id: str | None, *, force: bool,
                  confirm: Callable[[Survey], bool], note: Callable[[str], None]) -> Result:
    """Steps 1-4 of the module docstring; the caller holds the data-dir lock."""
    s = await survey(data, cfg, binary, name, member_id)
    why = s.refusal()
    if why and (not force or not s.others):
        raise RecoverRefused(f"refusing to recover: {why}" + ("" if not s.others else " (--force overrides)"))
    if why:
        note(f"warning: {why}; going on because of --force")
    if not confirm(s):
        raise RecoverRefused("not confirmed; nothing was changed")
    archive = backup_db(data, cfg, binary, s, data.root / "backups")
    note(f"backup of the current db: {archive}")
    return Result(s, archive, await force_new_cluster(data, cfg, binary, name))
