"""`etcdward token create|list|invalidate`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from .. import tokens
from ..durations import parse_duration
from ..paths import DataDir
from ..store import Store
from ..store import errors as E
from .common import CLIError, data_dir_option, node_config, print_data, print_table, with_store


@click.group("token")
def token_group() -> None:
    """Manage join tokens."""


@token_group.command("create")
@click.option("--role", type=click.Choice(list(tokens.ROLES)), required=True, help="role of the joining node")
@click.option("--expiry", default="24h", show_default=True, help="validity, e.g. 1h30m (at least 1s); the literal 0 means never")
@data_dir_option
def create(role: str, expiry: str, data_dir: Path) -> None:
    """Create a join token and print it on one line."""
    try:
        validity = parse_duration(expiry, minimum=1.0, zero_means="never")
    except ValueError as e:
        raise CLIError(f"--expiry: {e}") from None
    data = DataDir.at(data_dir)
    cfg = node_config(data)
    try:
        ca = data.ca_crt.read_bytes()
    except OSError as e:
        raise CLIError(f"cannot read the cluster CA {data.ca_crt}: {e.strerror}") from None

    async def go(store: Store) -> str:
        bearer, _ = await tokens.create(store, role, validity)
        return bearer

    try:
        bearer = with_store(data, go)
    except E.StoreError as e:
        raise CLIError(f"can't create token: {_explain(e, data)}") from None
    click.echo(tokens.encode(tokens.JoinToken(cfg.effective().api_url, ca, bearer)))


@token_group.command("list")
@data_dir_option
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True,
              help="output format")
def list_(data_dir: Path, output: str) -> None:
    """List join tokens (never their secrets)."""
    try:
        recs = with_store(DataDir.at(data_dir), tokens.list_tokens)
    except E.StoreError as e:
        raise CLIError(f"can't list tokens: {_explain(e, DataDir.at(data_dir))}") from None
    now = dt.datetime.now(dt.timezone.utc)
    if output != "table":
        print_data([{"id": r.id, "role": r.role, "created": r.created, "expires": r.expires,
                     "expired": r.expired(now)} for r in recs], output)
        return
    print_table(["ID", "ROLE", "CREATED", "EXPIRES"],
                [[r.id, r.role, r.created, (r.expires or "never") + (" (expired)" if r.expired(now) else "")]
                 for r in recs])


@token_group.command("invalidate")
@click.argument("token_id")
@data_dir_option
def invalidate(token_id: str, data_dir: Path) -> None:
    """Invalidate the token whose ID is TOKEN_ID (the 6 characters before the dot of the token)."""
    tid = token_id.split(".", 1)[0]
    if not tokens.TOKEN_RE.fullmatch(f"{tid}.aaaaaaaaaaaaaaaa"):
        raise CLIError(f"token ID {token_id!r} is not valid: expected 6 lowercase letters or digits")

    async def go(store: Store) -> bool:
        return await tokens.invalidate(store, tid)

    try:
        if not with_store(DataDir.at(data_dir), go):
            raise CLIError(f"no token with ID {tid}")
    except E.StoreError as e:
        raise CLIError(f"can't invalidate token: {_explain(e, DataDir.at(data_dir))}") from None
    click.echo(f"token {tid} invalidated")


def _explain(e: E.StoreError, data: DataDir) -> str:
    if isinstance(e, E.Unavailable):
        return (f"etcd of the controller in {data.root} is not reachable; is the controller running? "
                f"(etcdward controller --data-dir {data.root}) [{e}]")
    return str(e)

