"""`etcdward status`: is my control plane healthy? The cluster as this node's etcd sees it.

Exit codes: 0 healthy, 1 degraded (the reasons are listed in every format), 2 this node
cannot reach its etcd (one line). The reading and the verdict live in clusterview.py; this
module only prints. The store and the rest load inside the command (start-up stays light).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import localstate
from ..paths import DataDir
from .common import CLIError, data_dir_option, node_config, open_store, run
from .status_output import HEALTHY, UNREACHABLE, backup_schedule, exit_code, status_info, status_text

if TYPE_CHECKING:
    from ..store import Store



class EtcdUnreachable(CLIError):
    exit_code = UNREACHABLE


@click.command("status")
@data_dir_option
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True,
              help="output format")
@click.option("-w", "--watch", is_flag=True, help="redraw every second until Ctrl-C (json/yaml: one document a second)")
def status(data_dir: Path, output: str, watch: bool) -> None:
    """Cluster health: members, leaders, raft and db figures, records, backups, and why it is degraded.

    Exit code 0 healthy, 1 degraded, 2 this node's etcd cannot be reached."""
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
    if not watch:
        info = run(_once(data))
        emit(info, output)
        sys.exit(exit_code(info))
    try:
        run(_watch(data, output))
    except KeyboardInterrupt:
        pass
    sys.exit(HEALTHY)  # Ctrl-C ends a watch: that is how it is meant to end


def _local_facts(data: DataDir) -> dict[str, Any]:
    """What this node's files say (read before etcd is asked: a damaged file is one line)."""
    cfg = node_config(data)
    pinned = localstate.load_identity(data)
    waiting = localstate.read_no_peer(data)
    spec = cfg.spec.backup
    return {"pinnedClusterID": pinned.cluster_id if pinned else None, "clientURL": cfg.client_url,
            "waiting": waiting["reason"] if waiting else None,
            "backup": backup_schedule({"interval": spec.interval, "dir": spec.dir, "keep": spec.keep,
                                       "beforeMembershipChange": spec.before_membership_change}, data.root)}


async def _view(store: Store, data: DataDir, local: dict[str, Any]) -> dict[str, Any]:
    from ..clusterview import gather, to_dict
    from ..store import errors as E

    try:
        view = await gather(store, data=data)
    except E.StoreError as e:
        if local["waiting"]:
            raise EtcdUnreachable("can't get status: this node's etcd has no quorum (see `waiting` above)") from None
        raise EtcdUnreachable(f"can't get status: this node's etcd does not answer ({e})") from None
    return status_info(to_dict(view), local)


async def _once(data: DataDir) -> dict[str, Any]:
    store = open_store(data, timeout=3.0)  # no certificates or no config: one line, before the rest
    local = _local_facts(data)
    async with store:
        return await _view(store, data, local)


async def _watch(data: DataDir, output: str) -> None:
    import asyncio

    tty = output == "table" and sys.stdout.isatty()
    store = open_store(data, timeout=3.0)
    local = _local_facts(data)
    async with store:  # one connection for the whole watch
        while True:
            started = time.monotonic()
            try:
                info: dict[str, Any] | None = await _view(store, data, local)
                problem = ""
            except EtcdUnreachable as e:
                info, problem = None, e.message
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")  # redraw in place
            if info is None:
                click.echo(problem)
            elif output == "table":
                emit(info, output)
                click.echo(f"(every 1s, {time.strftime('%H:%M:%S')}; Ctrl-C to stop)" if tty else "")
            elif output == "json":
                import json

                click.echo(json.dumps(info))  # one document per line
            else:
                click.echo("---")
                emit(info, output)
            sys.stdout.flush()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def emit(info: dict[str, Any], output: str) -> None:
    click.echo(status_text(info, output), nl=False)
