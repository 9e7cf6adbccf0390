"""`etcdward etcd defrag [--all]` and `etcdward etcd alarm list|disarm`: flags and printing; the
work is in maintenance/."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from ..paths import DataDir
from .common import CLIError, data_dir_option, print_table, with_store
from .etcd_cmds import etcd_group

if TYPE_CHECKING:  # imported with every `etcd` subcommand: what only these commands use is imported in them
    from ..maintenance.defrag import DefragReport
    from ..store import Alarm, Store

T = TypeVar("T")


@etcd_group.command("defrag")
@data_dir_option
@click.option("--all", "all_members", is_flag=True,
              help="every member, through its controller: followers first, the etcd leader last")
def defrag(data_dir: Path, all_members: bool) -> None:
    """Defragment this member's etcd db (or every member's), returning free pages to the disk.

    A member is blocked while it is defragmented: refused while any member is not started, not
    live or a learner, or a join is queued; only one defrag runs at a time in the cluster."""
    from ..maintenance.defrag import defrag_members, record
    from ..maintenance.lock import DefragLock
    from ..maintenance.remote import ControllerClient

    data = DataDir.at(data_dir)
    caller = f"etcdward etcd defrag{' --all' if all_members else ''} on {socket.gethostname()} (pid {os.getpid()})"

    def show(r: DefragReport) -> None:
        click.echo(r.line())

    async def go(store: Store) -> list[DefragReport]:
        client = ControllerClient(data, "etcdward-cli") if all_members else None
        only = None if all_members else [(await store.status()).member_id]
        async with DefragLock(store, caller):
            reports = await defrag_members(store, client, only=only, note=show)
        await record(store, "defrag", caller, f"defrag of {', '.join(r.name for r in reports)}", reports)
        return reports

    _with_local_etcd(data, go, "can't defragment")


def _with_local_etcd(data: DataDir, fn: Callable[[Store], Awaitable[T]], what: str) -> T:
    from ..store import errors as E

    try:
        return with_store(data, fn)
    except E.StoreError as e:
        raise CLIError(f"{what}: etcd of {data.root} is not reachable or failed: {e}") from None


@etcd_group.group("alarm")
def alarm_group() -> None:
    """etcd's alarms: NOSPACE (the db reached its quota: reads and deletes only) and CORRUPT."""


def _show_alarms(alarms: list[Alarm], names: dict[int, str], output: str) -> None:
    rows = [{**a.as_dict(), "name": names.get(a.member_id, "")} for a in alarms]
    if output == "json":
        sys.stdout.write(json.dumps({"alarms": rows}, indent=2) + "\n")
    elif rows:
        print_table(["MEMBER ID", "NAME", "ALARM"], [[r["memberID"], r["name"], r["alarm"]] for r in rows])
    else:
        click.echo("no alarms")


def _alarms_command(disarm: bool) -> click.Command:
    @data_dir_option
    @click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
                  help="output format")
    def command(data_dir: Path, output: str) -> None:
        async def go(store: Store) -> tuple[list[Alarm], dict[int, str]]:
            alarms = await store.alarms()
            for a in alarms if disarm else []:
                await store.disarm(a)
            return alarms, {m.id: m.name for m in await store.members()}

        alarms, names = _with_local_etcd(DataDir.at(data_dir), go,
                                         "can't disarm alarms" if disarm else "can't list alarms")
        _show_alarms(alarms, names, output)

    return command


alarm_group.command("list", help="List the cluster's active alarms.")(_alarms_command(disarm=False))
alarm_group.command("disarm", help="Disarm every active alarm and list what was disarmed. Free space first "
                                   "(delete, compact, defrag): a NOSPACE alarm is raised again by the next write "
                                   "that finds the db over its quota.")(_alarms_command(disarm=True))
