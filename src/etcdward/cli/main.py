"""The `etcdward` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from .. import config as cfgmod
from ..node import Controller, ControllerError, Options
from ..paths import DEFAULT_DATA_DIR, DataDir
from ..pki import PKIError
from ..supervisor import EtcdBinaryNotFound
from .common import CLIError
from .etcd_cmds import etcd_group

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="etcdward")
def cli() -> None:
    """etcdward: etcd control-plane membership manager."""


def read_token(token: str | None, token_file: Path | None) -> str | None:
    if token and token_file:
        raise CLIError("give the join token either as an argument or with --token-file, not both")
    if token_file is not None:
        try:
            return token_file.read_text().strip() or None
        except OSError as e:
            raise CLIError(f"cannot read --token-file {token_file}: {e.strerror}") from None
    return token.strip() if token else None


@cli.command()
@click.argument("token", required=False)
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), help="file holding the join token")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="config file (YAML)")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR, show_default=True)
@click.option("--join-timeout", type=float, default=600.0, show_default=True, help="seconds to keep trying to join")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def controller(token: str | None, token_file: Path | None, config_file: Path | None, data_dir: Path,
               join_timeout: float, verbose: bool) -> None:
    """Run a control-plane node (etcd + join API + reconciler) in the foreground."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "etcd3aio", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data = DataDir.at(data_dir)
    try:
        cfg = cfgmod.load(config_file)
    except cfgmod.ConfigError as e:
        raise CLIError(str(e)) from None
    # The token is only read when it is needed: a joined node restarts with a deleted token
    # file (k0sctl #256), so a missing token file is an error only for a join.
    tok: str | None
    try:
        tok = read_token(token, token_file)
    except CLIError:
        if data.etcd_db.exists():
            tok = None
        else:
            raise
    ctl = Controller(Options(data=data, config=cfg, token=tok, join_timeout=join_timeout))
    try:
        rc = asyncio.run(ctl.run())
    except (ControllerError, EtcdBinaryNotFound, PKIError) as e:
        raise CLIError(f"etcdward controller: {e}") from None
    sys.exit(rc)


@cli.group("config")
def config_group() -> None:
    """Work with config files."""


@config_group.command("validate")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
def config_validate(config_file: Path) -> None:
    """Check a config file and print the effective config."""
    try:
        cfg = cfgmod.load(config_file).effective()
    except cfgmod.ConfigError as e:
        raise CLIError(str(e)) from None
    click.echo(cfg.to_yaml(), nl=False)


cli.add_command(etcd_group)


def _register_optional() -> None:
    # Each command group lives in its own module; importing them here keeps main.py small.
    from . import playground_cmd

    cli.add_command(playground_cmd.up)
    for mod_name in ("token_cmds", "record_cmds", "admin_cmds", "status_cmd"):
        try:
            mod = __import__(f"etcdward.cli.{mod_name}", fromlist=["commands"])
        except ModuleNotFoundError:
            continue
        for cmd in mod.commands:
            cli.add_command(cmd)


_register_optional()


def main() -> None:
    cli(prog_name="etcdward")


__all__ = ["cli", "main", "DataDir"]
