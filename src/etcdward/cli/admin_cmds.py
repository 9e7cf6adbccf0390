"""`etcdward etcd leave` (k0s semantics plus the quorum guard) and `etcdward reset`."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import localstate
from ..addresses import canonical_host, host_port
from ..paths import DataDir
from ..store import Member
from ..store import errors as E
from .common import CLIError, data_dir_option, locked_data_dir, node_config, with_store
from .etcd_cmds import etcd_group

if TYPE_CHECKING:
    from ..config import Config
    from ..store import Store

# This module is imported with `etcd_cmds` (it adds `etcd leave` to the group), so every `etcd`
# subcommand pays for its top-level imports: what only leave and reset use is imported in them.


def check_peer_address(value: str) -> str:
    host = canonical_host(value)
    if host is not None:
        return host
    raise CLIError(f'invalid argument "{value}" for "--peer-address" flag: neither an IP address nor a DNS name')


@etcd_group.command("leave", context_settings={"allow_extra_args": True, "allow_interspersed_args": False})
@click.option("--peer-address", metavar="ip-or-dns-name",
              help="etcd peer address to remove (default <this node's peer address>)")
@click.option("--force", is_flag=True, help="skip the quorum guard")
@data_dir_option
@click.pass_context
def leave(ctx: click.Context, peer_address: str | None, force: bool, data_dir: Path) -> None:
    """Leave the etcd cluster, or remove a specific peer."""
    if ctx.args:
        raise CLIError(f'unknown command "{ctx.args[0]}" for "leave"')
    data = DataDir.at(data_dir)
    cfg = node_config(data)
    if peer_address is None:
        peer_address = cfg.etcd.peer_address
        if not peer_address:
            raise CLIError("this node doesn't have an etcd peer address, check the etcdward configuration "
                           f"({data.effective_config}) or use --peer-address")
    addr = check_peer_address(peer_address)
    url = f"https://{host_port(addr, cfg.etcd.peer_port)}"

    from ..membership import LeaveRefused, remove_member_guarded

    async def go(store: Store) -> Member:
        before = backup_before_removal(store, data, cfg, force) if cfg.spec.backup.before_membership_change else None
        return await remove_member_guarded(store, url, force, note=lambda line: click.echo(line, err=True),
                                           before=before)

    try:
        m = with_store(data, go, timeout=10.0)
    except LeaveRefused as e:
        raise CLIError(str(e)) from None
    except E.StoreError as e:
        raise CLIError(f"can't remove {url}: etcd of {data.root} is not reachable or failed: {e}") from None
    click.echo(f"Successfully deleted peerID={m.hex_id} ({m.name or '(unstarted)'}, {url})")


def backup_before_removal(store: Store, data: DataDir, cfg: Config, force: bool) -> Callable[[Member], Awaitable[None]]:
    """spec.backup.beforeMembershipChange: the reconciler's backup before a removal, taken here
    (BackupService, same archive dir and cluster-wide rate limit). A failed one stops the leave
    unless --force."""
    async def before(target: Member) -> None:
        from prometheus_client import CollectorRegistry  # only when a backup is due

        from ..backup.report import BackupMetrics
        from ..backup.schedule import RATE_LIMIT, BackupService
        from ..membership import LeaveRefused
        from ..metrics import Metrics

        logging.getLogger("etcdward.backup").setLevel(logging.ERROR)  # its outcome is told below, in one line
        ident = localstate.load_identity(data)
        node = ident.name if ident else localstate.hostname()
        backups = BackupService(store, data, cfg, node, BackupMetrics(Metrics(CollectorRegistry())))
        try:
            task = await backups.due_before_change(f"removal of member {target.hex_id}")
        except E.StoreError as e:
            reason = f"etcd: {e}"
        else:
            if task is None:
                click.echo("no backup before the removal: one was taken for a membership change less than "
                           f"{RATE_LIMIT} s ago (spec.backup.beforeMembershipChange)", err=True)
                return
            outcome = await task
            if outcome.ok:
                click.echo(f"backup before the removal: {outcome.path}", err=True)
                return
            reason = outcome.reason
        if not force:
            raise LeaveRefused(f"refusing to remove {target.name or '(unstarted)'} (id {target.hex_id}): the backup "
                               f"before it failed ({reason}); nothing was removed. Fix the backup "
                               f"(spec.backup.dir {backups.dir}), or use --force to remove without one")
        click.echo(f"warning: the backup before the removal failed ({reason}); removing anyway (--force)", err=True)

    return before


# -- reset ----------------------------------------------------------------------------------

def reset_paths(data: DataDir) -> list[Path]:
    """What `reset` removes: etcd data (and dirs moved aside), state/ (identity, tombstone,
    join progress, effective config) and pki/ (a rejoin fetches the cluster CAs from the join
    API; a bootstrap makes new ones). logs/ is kept for the post-mortem."""
    paths = [data.etcd, data.state, data.pki]
    if data.root.is_dir():
        paths += sorted(p for p in data.root.iterdir() if p.name.startswith(f"{data.etcd.name}.aside-"))
    return [p for p in paths if p.exists()]


async def _still_member(data: DataDir) -> str | None:
    try:
        cfg = node_config(data)
    except CLIError:
        return None  # no effective config: nothing to ask; the db check below still applies
    from ..store import local_store

    try:
        async with local_store(data, cfg.etcd.client_port, timeout=2.0) as st:
            status = await st.status(timeout=2.0)
            members = await st.members(timeout=2.0)
    except (E.StoreError, OSError):
        return None
    if any(m.id == status.member_id for m in members):
        return f"its etcd answers and member id {status.member_id:x} is in the member list"
    return None


@click.command("reset")
@data_dir_option
@click.option("--force", is_flag=True, help="reset even though this node may still be a member of its etcd cluster")
def reset(data_dir: Path, force: bool) -> None:
    """Remove this node's local state (etcd data, state/, pki/) so that it can join again.

    Refused while a controller runs on the data dir (it holds the data-dir lock), and, unless
    --force, while the node may still be an etcd member (remove it first: `etcdward patch
    etcdmember NAME --leave` or `etcdward etcd leave`)."""
    data = DataDir.at(data_dir)
    if not data.root.is_dir():
        click.echo(f"nothing to reset in {data.root}")  # and no dir created just to lock it
        return
    with locked_data_dir(data, "reset"):
        _reset_locked(data, force)


def _reset_locked(data: DataDir, force: bool) -> None:
    # The lock keeps controllers out; this also catches a stray etcd started by hand.
    from ..supervisor import etcd_processes

    pids = etcd_processes(data)
    if pids:
        raise CLIError(f"an etcd is running on {data.root} (pid {', '.join(map(str, pids))}): "
                       "stop it first")
    paths = reset_paths(data)
    if not paths:
        click.echo(f"nothing to reset in {data.root}")
        return
    if not force and not data.tombstone.exists():
        import asyncio

        reason = asyncio.run(_still_member(data)) if data.etcd_cert("ca")[0].exists() else None
        if reason is None and data.etcd_db.exists():
            reason = ("it has etcd data and no tombstone (state/removed.json), so it was never seen being removed "
                      "from its cluster")
        if reason:
            raise CLIError(
                f"refusing to reset {data.root}: this node may still be a member of its etcd cluster ({reason}). "
                "Remove it first (`etcdward patch etcdmember NAME --leave` or `etcdward etcd leave --peer-address "
                "ADDR` on another controller), or use --force to discard its state anyway (the member then stays "
                "in the cluster until removed)")
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        click.echo(f"removed {p}")
    click.echo(f"{data.root} is reset; join again with `etcdward controller <token> --data-dir {data.root}`")

