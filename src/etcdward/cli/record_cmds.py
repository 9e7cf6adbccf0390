"""`etcdward get|delete|patch etcdmember(s)`: kubectl-style access to the EtcdMember records.

All of them talk to the local etcd of --data-dir (through `etcdward.store`), so they work while
that node's etcd answers. They are thin: the verbs (and their compare-and-swap writes) are
`kubeapi.resource`, the same code the kube API serves to kubectl; errors print as kubectl's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from .. import records
from ..addresses import is_member_name
from ..kubeapi import resource
from ..kubeapi.patch import merge_patch
from ..kubeapi.status import KubeError, not_found
from ..paths import DataDir
from ..keys import ETCDMEMBERS
from ..store import errors as E
from .common import CLIError, data_dir_option, gateway_reader, with_store
from .output import get_text

if TYPE_CHECKING:  # the asyncio store: imported by the commands that write only
    from ..store import Store

T = TypeVar("T")
KINDS = ("etcdmembers", "etcdmember", "em")


def _store_call(data_dir: Path, fn: Callable[[Store], Awaitable[T]], what: str) -> T:
    data = DataDir.at(data_dir)
    try:
        return with_store(data, fn)
    except KubeError as e:
        if e.code == 503:
            raise CLIError(f"can't {what}: etcd of {data.root} is not reachable or failed: {e.message}") from None
        raise CLIError(e.cli_line()) from None
    except E.StoreError as e:
        raise CLIError(f"can't {what}: etcd of {data.root} is not reachable or failed: {e}") from None
    except OSError as e:
        raise CLIError(f"can't {what}: {e}") from None


def _read_records(data_dir: Path) -> records.Listing:
    """A read only: through etcd's JSON gateway, which spares `get` asyncio and ssl.py."""
    data = DataDir.at(data_dir)
    try:
        listing = records.listing(*gateway_reader(data).get_prefix(ETCDMEMBERS))
    except E.StoreError as e:
        raise CLIError(f"can't list EtcdMember records: etcd of {data.root} is not reachable or failed: etcd is not "
                       f"available: {e}") from None
    except OSError as e:
        raise CLIError(f"can't list EtcdMember records: {e}") from None
    return listing


def _check_name(name: str) -> str:
    if not is_member_name(name):
        raise CLIError(f'invalid NAME "{name}": must be a lowercase RFC 1123 name (like an etcd member name)')
    return name


@click.group("get")
def get_group() -> None:
    """Display EtcdMember records (like kubectl get)."""


def _get(kind: str) -> click.Command:
    @click.command(kind, help="List EtcdMember records, or show the one called NAME.")
    @click.argument("name", required=False)
    @click.option("-o", "--output", type=click.Choice(["table", "wide", "json", "yaml"]), default="table",
                  show_default=True, help="output format")
    @data_dir_option
    def cmd(name: str | None, output: str, data_dir: Path) -> None:
        if name is not None:
            _check_name(name)

        got = get_text(_read_records(data_dir), name, output)
        if got is None:
            raise CLIError(not_found(name or "").cli_line())
        text, warnings = got
        for line in warnings:
            click.echo(line, err=True)
        sys.stdout.write(text)

    return cmd


@click.group("delete")
def delete_group() -> None:
    """Delete EtcdMember records (like kubectl delete)."""


def _delete(kind: str) -> click.Command:
    @click.command(kind, help="Delete the EtcdMember record NAME (compare-and-swap on its revision). A record "
                              "of a live member is re-created by the reconciler.")
    @click.argument("name")
    @data_dir_option
    def cmd(name: str, data_dir: Path) -> None:
        _check_name(name)

        async def go(store: Store) -> records.EtcdMember:
            return await resource.delete_member(store, name)

        _store_call(data_dir, go, f"delete etcdmember {name}")
        click.echo(f'etcdmember.etcd.etcdward.io "{name}" deleted')

    return cmd


def parse_patch(text: str) -> bool:
    """A JSON merge patch that may only touch spec.leave; returns the new value."""
    try:
        p = json.loads(text)
    except ValueError as e:
        raise CLIError(f"--patch: not valid JSON: {e}") from None
    if not isinstance(p, dict) or set(p) != {"spec"} or not isinstance(p["spec"], dict):
        extra = sorted(set(p) - {"spec"}) if isinstance(p, dict) else []
        field = f'"{extra[0]}"' if extra else "the top level"
        raise CLIError(f"--patch: field {field} cannot be patched; only spec.leave can, e.g. "
                       '\'{"spec":{"leave":true}}\'')
    spec = p["spec"]
    if set(spec) != {"leave"}:
        bad = sorted(set(spec) - {"leave"}) or ["leave"]
        raise CLIError(f'--patch: field "spec.{bad[0]}" cannot be patched; only spec.leave can')
    if not isinstance(spec["leave"], bool):
        raise CLIError(f"--patch: spec.leave must be true or false, got {json.dumps(spec['leave'])}")
    return bool(spec["leave"])


@click.group("patch")
def patch_group() -> None:
    """Update fields of an EtcdMember record (like kubectl patch)."""


def _patch(kind: str) -> click.Command:
    @click.command(kind, help="Set spec.leave of the record NAME: --leave asks the reconciler to remove the member "
                              "from the etcd cluster (with the quorum guard); --no-leave withdraws the request.")
    @click.argument("name")
    @click.option("--leave/--no-leave", "leave", default=None, help="set or clear spec.leave")
    @click.option("-p", "--patch", "patch", help='JSON merge patch, only {"spec":{"leave":true|false}}')
    @click.option("--type", "patch_type", type=click.Choice(["merge"]), default="merge", show_default=True,
                  help="patch type (kubectl compatibility)")
    @data_dir_option
    def cmd(name: str, leave: bool | None, patch: str | None, patch_type: str, data_dir: Path) -> None:
        _check_name(name)
        if patch is not None and leave is not None:
            raise CLIError("give either --leave/--no-leave or --patch, not both")
        if patch is not None:
            leave = parse_patch(patch)
        if leave is None:
            raise CLIError("nothing to patch: give --leave, --no-leave or -p '{\"spec\":{\"leave\":true}}'")
        body = {"spec": {"leave": leave}}

        async def go(store: Store) -> tuple[records.EtcdMember, bool]:
            return await resource.patch_member(store, name, lambda obj: merge_patch(obj, body))

        _, changed = _store_call(data_dir, go, f"patch etcdmember {name}")
        click.echo(f"etcdmember.etcd.etcdward.io/{name} {'patched' if changed else 'patched (no change)'}")

    return cmd


for _kind in KINDS:
    get_group.add_command(_get(_kind))
    delete_group.add_command(_delete(_kind))
    patch_group.add_command(_patch(_kind))
