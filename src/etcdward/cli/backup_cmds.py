"""`etcdward backup --save-path DIR|-` and `etcdward backup list`."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..backup.archive import ArchiveError, ArchiveExists, verify_file
from ..paths import DataDir
from .common import CLIError, data_dir_option, node_client_port, print_data, print_table, with_store

if TYPE_CHECKING:
    from ..store import Store


@click.group("backup", invoke_without_command=True)
@click.option("--save-path", help="directory to write the archive to, or - for stdout")
@data_dir_option
@click.pass_context
def backup_group(ctx: click.Context, save_path: str | None, data_dir: Path) -> None:
    """Back up this node's etcd, CAs and config into one archive (its controller must run).

    The archive holds the CA keys: keep it as safe as the data dir (it is written 0600)."""
    if ctx.invoked_subcommand is not None:
        return
    if not save_path:
        raise CLIError("--save-path: required: a directory, or - to write the archive to stdout")
    data = DataDir.at(data_dir)
    if save_path == "-":
        if sys.stdout.isatty():
            raise CLIError("--save-path -: refusing to write a binary archive to a terminal; redirect stdout")
        dest: Path | None = None
    else:
        dest = Path(save_path).absolute()
        if dest.exists() and not dest.is_dir():
            raise CLIError(f"--save-path: {dest} is not a directory")
    if dest is not None:
        from ..backup.handoff import BackupFailed, NoController, backup_via_controller

        try:  # the running controller takes it: its store and connection are there already
            click.echo(str(backup_via_controller(data.root, dest, save_path)))
            return
        except BackupFailed as e:
            raise CLIError(str(e)) from None
        except NoController:
            pass  # none answers on its socket: taken here, as the controller would
    node_client_port(data)  # the effective config is checked before anything is taken
    # config.yaml of the archive: the effective config as the controller wrote it (cfg.to_yaml())
    config_yaml = data.effective_config.read_bytes()
    from ..backup.take import take_backup  # asyncio and the store: not for `backup list`
    from ..store import errors as E

    async def go(store: Store) -> Path | None:
        out = dest if dest is not None else sys.stdout.buffer
        return (await take_backup(store, data, config_yaml, out)).path

    # directories this command creates (the snapshot is staged in DEST) go again when it fails
    created = [] if dest is None else [d for d in (dest, *dest.parents) if not d.exists()]
    done = False
    try:
        path = with_store(data, go, timeout=10.0)
        done = True
    except (E.StoreError, ArchiveError, ArchiveExists, OSError) as e:
        from ..backup.handoff import failure_line

        raise CLIError(failure_line(e, data.root, save_path) or str(e)) from None
    finally:
        if not done:
            for d in created:  # deepest first, and only while empty
                with contextlib.suppress(OSError):
                    d.rmdir()
    if path is not None:
        click.echo(str(path))


@backup_group.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="directory of archives (default <data-dir>/backups)")
@data_dir_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="output format")
def backup_list(directory: Path | None, data_dir: Path, output: str) -> None:
    """List backup archives with their cluster, revision and whether each verifies.

    Exit code 1 (after the listing) if an archive does not verify: a check of the backups can
    run it as it is."""
    root = directory or DataDir.at(data_dir).root / "backups"
    if not root.is_dir():
        if directory is None:  # the operator named no directory: do not blame an option they did not give
            raise CLIError(f"no backup directory {root} (the default <data-dir>/backups: no scheduled backup or "
                           "recover wrote one there yet); give --dir DIR for archives elsewhere")
        raise CLIError(f"--dir: {root} is not a directory")
    rows = []
    for path in sorted(root.glob("etcdward_backup_*.tar.gz")):
        row = {"name": path.name, "path": str(path), "size": path.stat().st_size}
        try:
            m = verify_file(path)
            row.update(created=m.created, clusterID=m.cluster_id, revision=m.revision, member=m.member_name,
                       etcdVersion=m.etcd_version, verified=True, error=None)
        except ArchiveError as e:
            row.update(created=None, clusterID=None, revision=None, member=None, etcdVersion=None, verified=False,
                       error=str(e))
        rows.append(row)
    if output == "json":
        print_data(rows, "json")
    else:
        print_table(["NAME", "CREATED", "SIZE", "CLUSTER ID", "REVISION", "VERIFIED"],
                    [[r["name"], r["created"] or "-", r["size"], r["clusterID"] or "-", r["revision"] or "-",
                      "yes" if r["verified"] else f"NO: {r['error']}"] for r in rows])
    bad = [r["name"] for r in rows if not r["verified"]]
    if bad:
        raise CLIError(f"backup list: {len(bad)} of {len(rows)} archive(s) in {root} do not verify: {', '.join(bad)}")
