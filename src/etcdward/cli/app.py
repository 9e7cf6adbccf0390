"""The `etcdward` command: the click group, its eager commands and the CLI's error boundary
(`etcdward.cli.main` runs the fast path first, then this)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import logformat
from ..paths import DEFAULT_DATA_DIR, DataDir
from ..errors import EtcdwardError
from .commandlist import LAZY_COMMANDS, LAZY_HELP
from .common import CLIError, Seconds

class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, but without importing the lazy commands whose help is in LAZY_HELP."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            if name in LAZY_HELP and name not in self.commands:
                rows.append((name, click.Command(name, help=LAZY_HELP[name]).get_short_help_str(limit)))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in LAZY_COMMANDS:
            return super().get_command(ctx, name)
        import importlib

        target, *extra = LAZY_COMMANDS[name]
        for mod in extra:
            importlib.import_module(f"etcdward.cli.{mod}")
        mod_name, attr = target.split(":")
        return getattr(importlib.import_module(f"etcdward.cli.{mod_name}"), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="etcdward")
def cli() -> None:
    """etcdward: etcd control-plane membership manager."""


def read_token(token: str | None, token_file: Path | None) -> str | None:
    """The join token: None when neither an argument nor --token-file is given; "" when one is
    given but empty or blank (the start decision refuses that instead of bootstrapping)."""
    if token is not None and token_file is not None:
        raise CLIError("give the join token either as an argument or with --token-file, not both")
    if token_file is not None:
        try:
            return token_file.read_text(errors="replace").strip()
        except OSError as e:
            raise CLIError(f"cannot read --token-file {token_file}: {e.strerror}") from None
    return token.strip() if token is not None else None


@cli.command()
@click.argument("token", required=False)
@click.option("--token-file", type=click.Path(path_type=Path), help="file holding the join token")
@click.option("-c", "--config", "config_file", type=click.Path(path_type=Path), help="config file (YAML)")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR, show_default=True,
              help="where this node keeps etcd's data, its PKI and its state")
@click.option("--join-timeout", type=Seconds(minimum=1.0), default=600.0, show_default=True,
              help="seconds to keep trying to join")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.option("--log-format", type=click.Choice(logformat.FORMATS), default="text", show_default=True,
              help="one line per event on stderr: text, or one JSON object per line")
def controller(token: str | None, token_file: Path | None, config_file: Path | None, data_dir: Path,
               join_timeout: float, verbose: bool, log_format: str) -> None:
    """Run a control-plane node (etcd + join API + reconciler) in the foreground.

    Without TOKEN (or --token-file) on an empty data dir it bootstraps a new cluster; with a join
    token (from `etcdward token create` on a member) it joins that cluster; on a data dir that
    already holds a member it restarts it. SIGTERM/SIGINT stop it and its etcd cleanly."""
    logformat.configure(log_format, verbose)
    data = DataDir.at(data_dir)
    from ..pkiprocess import JOINER_NICE, PKIWorker

    # Forked first: it imports cryptography on the other core while this process loads its config
    # (pkiprocess.py). With a token at a lower priority: joiners start side by side, and the
    # child's import must not take CPU from their way to the join request.
    with PKIWorker(nice=0 if token is None and token_file is None else JOINER_NICE) as pki:
        from .. import config as cfgmod  # pydantic: 0.2 s of start-up that other commands need not pay

        try:
            cfg = cfgmod.load_effective(config_file)
        except cfgmod.ConfigError as e:
            raise CLIError(f"etcdward controller: {e}") from None
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
        from ..node import run_controller

        code = run_controller(data, cfg, tok, join_timeout, verbose, pki=pki)
    sys.exit(code)


@cli.group("config")
def config_group() -> None:
    """Work with config files."""


@config_group.command("validate")
@click.option("-c", "--config", "config_file", type=click.Path(path_type=Path), required=True,
              help="the config file (YAML) to check")
def config_validate(config_file: Path) -> None:
    """Check a config file and print the effective config."""
    from .. import config as cfgmod

    try:
        cfg = cfgmod.load_effective(config_file)
    except cfgmod.ConfigError as e:
        raise CLIError(str(e)) from None
    click.echo(cfg.to_yaml(), nl=False)


def main() -> None:
    """The CLI's one error boundary (click prints its own usage errors): every error becomes
    one line on stderr and exit code 1, never a traceback."""
    try:
        cli(prog_name="etcdward")
    except EtcdwardError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    except Exception as e:  # a bug: still one line
        fail(f"unexpected error ({type(e).__name__}: {e})")


def fail(why: str) -> None:
    logformat.fatal(f"etcdward: {why}")  # one JSON line when the controller logs JSON
    sys.exit(1)

