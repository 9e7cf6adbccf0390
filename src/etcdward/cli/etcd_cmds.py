"""`etcdward etcd ...`: member-list (k0s format) and leave."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..paths import DataDir
from ..store import errors as E
from .common import CLIError, data_dir_option, gateway_reader
from .output import member_list_text


@click.group("etcd")
def etcd_group() -> None:
    """Manage the etcd cluster membership."""


@etcd_group.command("member-list", context_settings={"ignore_unknown_options": False})
@data_dir_option
@click.option("-o", "--output", type=click.Choice(["json", "table", "wide"]), default="json", show_default=True,
              help="json: k0s's one-line {\"members\":{NAME:PEER_URL}}; table/wide: one row per member")
def member_list(data_dir: Path, output: str) -> None:
    """List etcd cluster members (JSON encoded, like k0s)."""
    data = DataDir.at(data_dir)
    try:
        # a read only: store/gateway.py's blocking reader, which spares the command asyncio and ssl.py
        members = gateway_reader(data).members()
    except (E.StoreError, CLIError, OSError) as e:
        msg = e.message if isinstance(e, CLIError) else str(e)
        raise CLIError(f"can't list etcd cluster members: {msg}") from None
    sys.stdout.write(member_list_text(members, output))
