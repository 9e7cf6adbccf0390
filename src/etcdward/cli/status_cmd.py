"""`etcdward status`: this node's view of the cluster in one screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import localstate
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
    }


@click.command("status")
@data_dir_option
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
def status(data_dir: Path, output: str) -> None:
    """Show this node's member, role, health and the cluster's leaders."""
    data = DataDir.at(data_dir)
    try:
        info = with_store(data, gather)
    except E.StoreError as e:
        raise CLIError(f"can't get status: {e}") from None
    pinned = localstate.load_identity(data)
    info["pinnedClusterID"] = pinned.cluster_id if pinned else None
    info["tombstone"] = localstate.read_tombstone(data)
    info["clientURL"] = node_config(data).client_url
    if output != "table":
        print_data(info, output)
        return
    width = max(len(k) for k in info)
    for k, v in info.items():
        click.echo(f"{k + ':':<{width + 2}}{'' if v is None else v}")

