"""`etcdward status`: is my control plane healthy? The cluster as this node's etcd sees it.

Exit codes: 0 healthy, 1 degraded (the reasons are listed in every format), 2 this node
cannot reach its etcd (one line). The reading and the verdict live in clusterview.py; this
module only prints. gRPC and the rest load inside the command (start-up stays light).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import localstate
from ..paths import DataDir
from .common import CLIError, data_dir_option, node_config, open_store, print_data, run

if TYPE_CHECKING:
    from ..store import Store

HEALTHY, DEGRADED, UNREACHABLE = 0, 1, 2


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
        sys.exit(DEGRADED if info["reasons"] else HEALTHY)
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
            "backup": {"interval": spec.interval, "dir": spec.dir or str(data.root / "backups"), "keep": spec.keep,
                       "beforeMembershipChange": spec.before_membership_change}}


async def _view(store: Store, data: DataDir, local: dict[str, Any]) -> dict[str, Any]:
    from ..clusterview import gather, to_dict
    from ..store import errors as E

    try:
        view = await gather(store, data=data)
    except E.StoreError as e:
        if local["waiting"]:
            raise EtcdUnreachable("can't get status: this node's etcd has no quorum (see `waiting` above)") from None
        raise EtcdUnreachable(f"can't get status: this node's etcd does not answer ({e})") from None
    info = to_dict(view)
    info["backup"] = {**local["backup"], **info["backup"]}
    return {**info, "pinnedClusterID": local["pinnedClusterID"], "clientURL": local["clientURL"],
            "waiting": local["waiting"]}


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
    if output != "table":
        print_data(info, output)
        return
    for line in table_lines(info):
        click.echo(line)


def table_lines(info: dict[str, Any]) -> list[str]:
    from ..clusterview import human_bytes

    def size(n: int | None) -> str:
        return "-" if n is None else human_bytes(n)

    def opt(v: Any) -> str:
        return "-" if v is None or v == [] else str(v)

    head = {"status": info["verdict"], "clusterID": info["clusterID"], "etcdVersions": ", ".join(info["etcdVersions"]),
            "etcdLeader": info["etcdLeader"], "reconcilerLeader": info["reconcilerLeader"],
            "member": info["member"], "memberID": info["memberID"], "role": info["role"],
            "healthy": info["healthy"], "pinnedClusterID": info["pinnedClusterID"], "clientURL": info["clientURL"]}
    width = 18
    lines = [f"{k + ':':<{width}}{'' if v is None else v}" for k, v in head.items()]
    columns = ["MEMBER", "ID", "ROLE", "LEADER", "STARTED", "HEALTHY", "TERM", "APPLIED", "DB", "IN USE", "QUOTA",
               "ALARMS", "PROGRESS", "REPORTED"]
    rows = []
    for m in info["members"]:
        lead = ",".join(x for x, on in (("etcd", m["etcdLeader"]), ("reconciler", m["reconcilerLeader"])) if on)
        rows.append([m["name"], m["id"], m["role"], lead or "-", "yes" if m["started"] else "no",
                     "-" if m["healthy"] is None else "yes" if m["healthy"] else "NO", opt(m["raftTerm"]),
                     opt(m["raftAppliedIndex"]), size(m["dbSize"]), size(m["dbSizeInUse"]),
                     "none" if m["dbQuota"] == 0 else size(m["dbQuota"]), ",".join(m["alarms"]) or "-",
                     "-" if m["progress"] is None else f"{m['progress']:.0f}%",
                     "-" if m["lastReportSeconds"] is None else f"{m['lastReportSeconds']:.0f}s ago"])
    widths = [max(len(str(c)), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines.append("")
    lines.extend("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [columns, *rows])
    lines.append("")
    rec = info["records"]
    lines.append(f"{'records:':<{width}}" + (f"in sync ({rec['count']} records)" if rec["inSync"] else "OUT OF SYNC: "
                 + "; ".join(f"{d['record']}: {d['why']}" for d in rec["differ"])))
    versions = ", ".join(f"{k}={v}" for k, v in info["memberVersions"].items())
    lines.append(f"{'memberVersions:':<{width}}{versions}")
    lines.append("backup:")
    lines.extend(f"  {line}" for line in backup_lines(info["backup"]))
    lines.append("maintenance:")
    lines.extend(f"  {line}" for line in maintenance_lines(info["maintenance"]))
    lines.append(f"{'certificates:':<{width}}{certificates_line(info['certificates'])}")
    if info["reasons"]:
        lines.append("degraded:")
        lines.extend(f"  - {r}" for r in info["reasons"])
    return lines


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


def maintenance_lines(m: dict[str, Any]) -> list[str]:
    last, running = m.get("last"), m.get("running")
    if last:
        names = ", ".join(str(x.get("name")) for x in last.get("members") or [] if isinstance(x, dict)) or "-"
        done = f"{last.get('what')} at {last.get('when')} by {last.get('by')} ({names}): {last.get('message')}"
    else:
        done = "none recorded"
    now = "none" if not running else (f"defrag by {running['holder']}" + (
        "" if running.get("forSeconds") is None else f", for {running['forSeconds']:.0f}s"))
    return [f"last:         {done}", f"running:      {now}"]


def certificates_line(c: dict[str, Any] | None) -> str:
    """This node's earliest leaf and CA expiries."""
    from .certs_cmds import remaining_text

    if not c:
        return "-"
    def left(seconds: int) -> str:
        text = remaining_text(seconds)
        return text if text == "expired" else f"{text} left"

    parts = [f"{what} {e['path']} until {e['notAfter']} ({left(e['remainingSeconds'])})"
             for what, e in (("earliest leaf", c["earliestLeaf"]), ("earliest CA", c["earliestCA"])) if e]
    return "; ".join(parts) or "unreadable"
