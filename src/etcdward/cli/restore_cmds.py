"""`etcdward restore ARCHIVE|-`: flags and printing; the work is in backup/restore.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click

from .. import config as cfgmod
from ..addresses import ip_literal
from ..backup.restore import restore_archive
from ..errors import EtcdwardError
from ..paths import DataDir
from .common import CLIError, data_dir_option, locked_data_dir


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
            peer_address = ip_literal(peer_address.strip("[]"), "--peer-address")
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
