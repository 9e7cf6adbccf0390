"""`etcdward get|delete|patch etcdmember(s)`: kubectl-style access to the EtcdMember records.

All of them talk to the local etcd of --data-dir (through `etcdward.store`), so they work while
that node's etcd answers; every write is a compare-and-swap on the record's mod revision.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import records
from ..addresses import is_member_name
from ..paths import DataDir
from ..store import Store
from ..store import errors as E
from .common import CLIError, data_dir_option, print_data, print_table, with_store

T = TypeVar("T")
RESOURCE = "etcdmembers.etcd.etcdward.io"
KINDS = ("etcdmembers", "etcdmember", "em")


def _store_call(data_dir: Path, fn: Callable[[Store], Awaitable[T]], what: str) -> T:
    data = DataDir.at(data_dir)
    try:
        return with_store(data, fn)
    except E.StoreError as e:
        raise CLIError(f"can't {what}: etcd of {data.root} is not reachable or failed: {e}") from None
    except OSError as e:
        raise CLIError(f"can't {what}: {e}") from None


def _check_name(name: str) -> str:
    if not is_member_name(name):
        raise CLIError(f'invalid NAME "{name}": must be a lowercase RFC 1123 name (like an etcd member name)')
    return name


def not_found(name: str) -> CLIError:
    return CLIError(f'Error from server (NotFound): {RESOURCE} "{name}" not found')


def age(created: str, now: dt.datetime | None = None) -> str:
    try:
        t = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "<unknown>"
    secs = max(0, int(((now or dt.datetime.now(dt.timezone.utc)) - t).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size * (2 if unit != "m" else 1):
            return f"{secs // size}{unit}"
    return f"{secs}s"


COLUMNS = ["NAME", "PEER ADDRESS", "MEMBER ID", "JOINED", "RECONCILE STATUS"]
WIDE = ["LEAVE", "MESSAGE", "AGE"]


def rows(recs: list[records.EtcdMember], wide: bool) -> list[list[str]]:
    out = []
    for r in sorted(recs, key=lambda r: r.name):
        row = [r.name, r.peer_address, r.member_id, r.joined, r.reconcile_status]
        if wide:
            row += [str(r.leave).lower(), r.message, age(r.creation_timestamp)]
        out.append(row)
    return out


def as_list(recs: list[records.EtcdMember]) -> dict[str, Any]:
    return {"apiVersion": records.API_VERSION, "kind": records.LIST_KIND,
            "items": [r.to_dict() for r in sorted(recs, key=lambda r: r.name)]}


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

        async def fetch(store: Store) -> records.Listing:
            return await records.list_records(store)

        listing = _store_call(data_dir, fetch, "list EtcdMember records")
        for k, why in listing.invalid:
            click.echo(f"warning: {k} is not a valid EtcdMember record ({why}); skipped", err=True)
        recs = list(listing.records)
        if name is not None:
            one = next((r for r in recs if r.name == name), None)
            if one is None:
                raise not_found(name)
            if output in ("json", "yaml"):
                print_data(one.to_dict(), output)
            else:
                print_table(COLUMNS + (WIDE if output == "wide" else []), rows([one], output == "wide"))
            return
        if output in ("json", "yaml"):
            print_data(as_list(recs), output)
        elif not recs:
            click.echo("No resources found", err=True)
        else:
            print_table(COLUMNS + (WIDE if output == "wide" else []), rows(recs, output == "wide"))

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

        async def go(store: Store) -> bool:
            for _ in range(5):
                cur = await records.get(store, name)
                if cur is None:
                    return False
                if await records.delete(store, cur):
                    return True
            raise CLIError(f"record {name} kept changing while deleting it; try again")

        try:
            found = _store_call(data_dir, go, f"delete etcdmember {name}")
        except records.RecordError as e:
            raise CLIError(f"record {name} is not a valid EtcdMember ({e}); delete the key "
                           f"{records.key(name)} by hand") from None
        if not found:
            raise not_found(name)
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
        want = leave

        async def go(store: Store) -> tuple[records.EtcdMember, bool]:
            before = await records.get(store, name)
            if before is None:
                raise not_found(name)
            after = await records.modify(store, name, lambda r: None if r.leave == want else r.with_status(leave=want))
            return after, before.leave != want

        try:
            _, changed = _store_call(data_dir, go, f"patch etcdmember {name}")
        except records.NotFound:
            raise not_found(name) from None
        except (records.RecordError, records.RecordConflict) as e:
            raise CLIError(f"can't patch etcdmember {name}: {e}") from None
        click.echo(f"etcdmember.etcd.etcdward.io/{name} {'patched' if changed else 'patched (no change)'}")

    return cmd


for _kind in KINDS:
    get_group.add_command(_get(_kind))
    delete_group.add_command(_delete(_kind))
    patch_group.add_command(_patch(_kind))
