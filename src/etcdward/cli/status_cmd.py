"""`etcdward status`: this node's view of the cluster in one screen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .. import localstate
from ..backup.report import read_status
from ..paths import DataDir
from ..membership import alive_versions, current_leader
from ..store import Store
from ..store import errors as E
from .common import CLIError, data_dir_option, node_config, print_data, with_store


async def gather(store: Store) -> dict[str, Any]:
    st = await store.status()
    members = await store.members()
    me = next((m for m in members if m.id == st.member_id), None)
    leader = next((m for m in members if m.id == st.leader_id), None)
    try:
        await store.ready()
        healthy = True
    except E.StoreError:
        healthy = False
    try:
        rec_leader = await current_leader(store)
        versions = await alive_versions(store)  # from the liveness keys: who runs which etcd
    except E.StoreError:
        rec_leader, versions = None, {}
    try:
        backups = await read_status(store)
    except E.StoreError:
        backups = {"lastSuccess": None, "lastFailure": None}
    return {
        "member": me.name if me else None,
        "memberID": format(st.member_id, "x"),
        "clusterID": format(st.cluster_id, "x"),
        "role": "learner" if st.is_learner else "voter",
        "healthy": healthy,
        "etcdLeader": leader.name if leader else format(st.leader_id, "x"),
        "reconcilerLeader": (rec_leader or {}).get("name"),
        "members": len(members),
        "voters": sum(1 for m in members if not m.is_learner),
        "learners": sum(1 for m in members if m.is_learner),
        "etcdVersion": st.version,
        "memberVersions": dict(sorted(versions.items())),
        "dbSize": st.db_size,
        "raftTerm": st.raft_term,
        "raftIndex": st.raft_index,
        "errors": list(st.errors),
        "backup": backups,
    }


@click.command("status")
@data_dir_option
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
def status(data_dir: Path, output: str) -> None:
    """Show this node's member, role, health and the cluster's leaders."""
    data = DataDir.at(data_dir)
    tomb = localstate.read_tombstone(data)
    if tomb is not None:  # its controller stopped etcd and will not start it again
        raise CLIError(f"this node is fenced off its etcd cluster (state/removed.json, {tomb.get('removedAt') or '?'}): "
                       f"{tomb.get('reason')}" + ("" if "etcdward reset" in str(tomb.get("reason")) else
                                                  f"; to rejoin: `etcdward reset --data-dir {data.root}`, then start "
                                                  "the controller with a join token"))
    waiting = localstate.read_no_peer(data)
    if waiting is not None:  # its controller waits for a quorum that may never come back (fence.py)
        checked = time.time() - float(waiting.get("checked") or 0)
        click.echo(f"waiting: {waiting['reason']} (checked {checked:.0f}s ago)", err=True)
    try:
        info = with_store(data, gather)
    except E.StoreError as e:
        if waiting is not None:
            raise CLIError("can't get status: this node's etcd has no quorum (see `waiting` above)") from None
        raise CLIError(f"can't get status: {e}") from None
    info["waiting"] = waiting["reason"] if waiting else None
    pinned = localstate.load_identity(data)
    info["pinnedClusterID"] = pinned.cluster_id if pinned else None
    info["tombstone"] = localstate.read_tombstone(data)
    cfg = node_config(data)
    info["clientURL"] = cfg.client_url
    spec = cfg.spec.backup
    info["backup"] = {"interval": spec.interval, "dir": spec.dir or str(data.root / "backups"), "keep": spec.keep,
                      "beforeMembershipChange": spec.before_membership_change, **info["backup"]}
    if output != "table":
        print_data(info, output)
        return
    width = max(len(k) for k in info)
    for k, v in info.items():
        if k != "backup":
            click.echo(f"{k + ':':<{width + 2}}{'' if v is None else v}")
    click.echo("backup:")
    for line in backup_lines(info["backup"]):
        click.echo(f"  {line}")


def backup_lines(b: dict[str, Any]) -> list[str]:
    """The backup block of the table: the schedule of this node's config, the cluster's last outcomes."""
    every = "off" if b["interval"] == "0" else f"every {b['interval']}"
    lines = [f"scheduled:    {every} into {b['dir']} (keep {b['keep']}; before membership changes: "
             f"{'yes' if b['beforeMembershipChange'] else 'no'})"]
    ok, bad = b.get("lastSuccess"), b.get("lastFailure")
    lines.append("lastSuccess:  " + (f"{ok.get('time')} on {ok.get('node')} ({ok.get('trigger')}, "
                                     f"{ok.get('durationSeconds')}s): {ok.get('path')}" if ok else "none"))
    lines.append("lastFailure:  " + (f"{bad.get('time')} on {bad.get('node')} ({bad.get('trigger')}): "
                                     f"{bad.get('reason')}" if bad else "none"))
    return lines

