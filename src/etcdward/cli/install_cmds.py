"""`etcdward install controller` and `etcdward uninstall`: the controller as a systemd service."""

from __future__ import annotations

from pathlib import Path

import click

from .. import logformat
from .. import systemdunit as unit
from ..paths import DEFAULT_DATA_DIR
from .common import CLIError

# Tests write the unit elsewhere; not an operator's option (systemd reads /etc/systemd/system).
unit_dir_option = click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=unit.UNIT_DIR,
                               hidden=True)


def as_root(what: str, path: Path, e: PermissionError) -> CLIError:
    return CLIError(f"cannot {what} {path}: {e.strerror}; run this as root (sudo etcdward ...)")


def reload_hint(unit_dir: Path) -> str:
    """Tell systemd about the changed unit when it is init and this is its unit dir; else say how."""
    if unit_dir == unit.UNIT_DIR and unit.systemd_is_init():
        p = unit.systemctl("daemon-reload")
        if p.returncode == 0:
            return "ran systemctl daemon-reload"
        return f"systemctl daemon-reload failed ({p.stderr.strip() or p.returncode}); run it yourself"
    return "run `systemctl daemon-reload`"


@click.group("install")
def install_group() -> None:
    """Install etcdward as a systemd service."""


@install_group.command("controller")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="config file (YAML) the service runs with; checked now")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR,
              show_default=True, help="absolute path of the data dir the service uses")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="file holding the join token (for a node that joins an existing cluster)")
@click.option("--log-format", type=click.Choice(logformat.FORMATS), default="text", show_default=True,
              help="the controller's log format (journald keeps either)")
@click.option("--dry-run", is_flag=True, help="print the unit and write nothing")
@click.option("--force", is_flag=True, help="replace an existing unit that differs")
@unit_dir_option
def install_controller(config_file: Path | None, data_dir: Path, token_file: Path | None, log_format: str,
                       dry_run: bool, force: bool, unit_dir: Path) -> None:
    """Write /etc/systemd/system/etcdward.service running `etcdward controller` with these flags."""
    spec = unit.check_spec(config_file, data_dir, token_file, log_format)
    text = unit.render_unit(spec)
    if dry_run:
        click.echo(text, nl=False)
        return
    path = unit_dir / unit.UNIT_NAME
    try:
        changed = unit.write_unit(path, text, force)
    except PermissionError as e:
        raise as_root("write", path, e) from None
    if not changed:
        click.echo(f"{path} is already up to date")
        return
    click.echo(f"wrote {path}; {reload_hint(unit_dir)}")
    click.echo(f"start it now and at boot with: systemctl enable --now {unit.UNIT_NAME}")


@click.command("uninstall")
@unit_dir_option
def uninstall(unit_dir: Path) -> None:
    """Remove the etcdward systemd service (refused while it runs)."""
    path = unit_dir / unit.UNIT_NAME
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        text = None
    if text is not None:
        unit.check_not_running(text)
    try:
        removed = unit.remove_unit(unit_dir)
    except PermissionError as e:
        raise as_root("remove", Path(e.filename or path), e) from None
    if not removed:
        click.echo(f"{path} does not exist; nothing to remove")
        return
    click.echo(f"removed {', '.join(map(str, removed))}; {reload_hint(unit_dir)}")
