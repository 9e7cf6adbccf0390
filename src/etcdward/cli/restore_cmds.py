"""`etcdward restore ARCHIVE|-` and `etcdward recover`: flags, prompts and printing; the work is
in backup/restore.py and backup/recover.py."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import IO

import click

from .. import config as cfgmod
from .. import localstate
from ..backup.recover import RecoverRefused, Survey, recover
from ..backup.restore import check_not_running, restore_archive
from ..errors import EtcdwardError
from ..paths import DataDir
from ..supervisor import find_etcd
from .common import CLIError, data_dir_option, locked_data_dir, node_config


@click.command("restore")
@click.argument("archive")
@data_dir_option
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="this host's config (default: the archived config with this host's addresses)")
@click.option("--peer-address", metavar="IP", help="this host's etcd peer address (default: from the config)")
@click.option("--config-out", type=click.Path(dir_okay=False, path_type=Path),
              help="write the config the restored controller should run with to this file")
def restore(archive: str, data_dir: Path, config_file: Path | None, peer_address: str | None,
            config_out: Path | None) -> None:
    """Restore a backup ARCHIVE (or - for stdin) into an empty data dir, as the one member of a
    new cluster. The controller must be stopped; every check is done before anything is written."""
    data = DataDir.at(data_dir)
    if peer_address is not None:
        try:
            peer_address = cfgmod.peer_ip(peer_address.strip("[]"), "--peer-address")
        except ValueError as e:
            raise CLIError(f"--peer-address: {e}") from None
    try:
        own = cfgmod.load(config_file) if config_file else None
    except cfgmod.ConfigError as e:
        raise CLIError(f"restore: {e}") from None
    src: IO[bytes]
    if archive == "-":
        if sys.stdin.isatty():
            raise CLIError("restore -: the archive is read from stdin, which is a terminal; pipe the archive in")
        src, what = sys.stdin.buffer, "the archive on stdin"
    else:
        try:
            src, what = open(archive, "rb"), archive
        except OSError as e:
            raise CLIError(f"restore: cannot read {archive}: {e.strerror}") from None
    try:
        with src:
            r = restore_archive(src, data, own_config=own, peer_address=peer_address, config_out=config_out,
                                locked=lambda: locked_data_dir(data, "restore"), what=what)
    except EtcdwardError as e:
        raise CLIError(f"restore: {e}") from None
    m = r.manifest
    click.echo(f"restored {what} (cluster {m.cluster_id}, revision {m.revision}, taken {m.created} on "
               f"{m.member_name or '?'}) into {data.root}")
    click.echo(f"new cluster {r.ident.cluster_id}: member {r.ident.name} (id {r.ident.member_id}) at "
               f"{r.config.peer_url}")
    click.echo("revisions bumped by 1000000000 and compacted (watchers relist)" if r.bumped else
               f"revisions not bumped ({r.tool.name} of etcd {r.etcd_version} cannot; etcdutl 3.5+ can): "
               "watchers of the old cluster must relist")
    if config_out:
        click.echo(f"config for this host: {config_out}")
    click.echo(f"next: etcdward controller -c {config_out or 'CONFIG'} --data-dir {data.root}; the other controllers "
               "join as fresh nodes (`etcdward reset`, then a join token)")


def _describe(s: Survey, data: DataDir) -> str:
    gone = "\n".join(f"  - {m.name or '(unstarted)'} (id {m.id}, {', '.join(m.peer_urls)})"
                     + (" answers, will be fenced" if m in s.answered else "") for m in s.others)
    return (f"Cluster {s.cluster_id}: {s.voters} voting members, {len(s.answered)} of the others answer.\n"
            f"Recovery makes {s.me.name} (id {s.me.id}) the only member, keeping all its data, and removes for good:\n"
            f"{gone}\nA backup of the current db goes to {data.root / 'backups'} first. Recover?")


@click.command("recover")
@data_dir_option
@click.option("--yes", is_flag=True, help="do not ask for confirmation (scripts)")
@click.option("--force", is_flag=True, help="recover even though other members still answer (split-brain risk)")
def recover_cmd(data_dir: Path, yes: bool, force: bool) -> None:
    """Quorum-loss recovery: make this surviving node (controller stopped) the only member of its
    cluster, keeping all its data, when a majority of the members is gone for good."""
    data = DataDir.at(data_dir)
    try:
        check_not_running(data, "recover")
    except EtcdwardError as e:
        raise CLIError(f"recover: {e}") from None
    if not data.etcd_db.exists():
        raise CLIError(f"recover: no etcd db in {data.etcd}: nothing to recover here (to start from a backup, use "
                       "`etcdward restore`)")
    tomb = localstate.read_tombstone(data)
    if tomb is not None:
        raise CLIError(f"recover: this node was removed from its cluster ({tomb.get('reason')}); it cannot recover it: "
                       f"`etcdward reset --data-dir {data.root}` and join with a token, or restore a backup")
    cfg = node_config(data)
    pinned = localstate.load_identity(data)
    name = localstate.resolve_name(pinned, cfg.etcd.name)
    if not yes and not sys.stdin.isatty():
        raise CLIError("recover: it asks for confirmation and stdin is not a terminal; add --yes to recover without "
                       "asking")

    def confirm(s: Survey) -> bool:
        return yes or click.confirm(_describe(s, data), default=False, err=True)

    try:
        binary = find_etcd(cfg.etcd.binary or None)
        with locked_data_dir(data, "recover"):
            r = asyncio.run(recover(data, cfg, binary, name, pinned.member_id if pinned else None, force=force,
                                    confirm=confirm, note=lambda line: click.echo(line, err=True)))
    except RecoverRefused as e:
        raise CLIError(f"recover: {e}") from None
    except EtcdwardError as e:
        raise CLIError(f"recover failed: {e}") from None
    removed = ", ".join(f"{m.name or '(unstarted)'} (id {m.id})" for m in r.survey.others)
    click.echo(f"recovered: {r.survey.me.name} (id {r.survey.me.id}) is the only member of cluster "
               f"{r.survey.cluster_id}; removed {removed}")
    click.echo(f"backup taken before: {r.archive}")
    click.echo(f"next: start the controller on {data.root} as usual; other nodes join as fresh nodes (`etcdward reset`, "
               "then a join token); a removed member that comes back with its old data is fenced")
