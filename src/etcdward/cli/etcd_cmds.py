"""`etcdward etcd ...`: member-list (k0s format) and leave."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..paths import DataDir
from ..store import Member
from ..store import errors as E
from .common import CLIError, data_dir_option, gateway_reader, print_table


@click.group("etcd")
def etcd_group() -> None:
    """Manage the etcd cluster membership."""


def k0s_member_list(members: list[Member]) -> str:
    """Exactly k0s's one-line format: {"members":{"<name>":"<peerURL>"}} (keys sorted)."""
    return json.dumps({"members": {m.name: m.peer_url for m in members}}, sort_keys=True,
                      separators=(",", ":"))


@etcd_group.command("member-list", context_settings={"ignore_unknown_options": False})
@data_dir_option
@click.option("-o", "--output", type=click.Choice(["json", "table", "wide"]), default="json", show_default=True,
              help="json: k0s's one-line {\"members\":{NAME:PEER_URL}}; table/wide: one row per member")
def member_list(data_dir: Path, output: str) -> None:
    """List etcd cluster members (JSON encoded, like k0s)."""
    data = DataDir.at(data_dir)
    try:
        # a read only: etcd's JSON gateway, which spares the command importing gRPC (~10x its run time)
        members = gateway_reader(data).members()
    except (E.StoreError, CLIError, OSError) as e:
        msg = e.message if isinstance(e, CLIError) else str(e)
        raise CLIError(f"can't list etcd cluster members: {msg}") from None
    if output == "json":
        sys.stdout.write(k0s_member_list(members) + "\n")
        return
    # table and wide both show what the issue lists; wide adds the decimal ID etcdctl's JSON uses
    cols = ["ID", "NAME", "PEER URLS", "CLIENT URLS", "LEARNER", "STARTED"] + (["ID (DECIMAL)"] if output == "wide" else [])
    rows = []
    for m in sorted(members, key=lambda m: (m.name or "~", m.id)):
        row = [m.hex_id, m.name or "(unstarted)", ",".join(m.peer_urls), ",".join(m.client_urls),
               str(m.is_learner).lower(), str(m.started).lower()]
        rows.append(row + ([str(m.id)] if output == "wide" else []))
    print_table(cols, rows)

