"""`etcdward kubeconfig`: print a kubeconfig for this node's kube API (kubectl --kubeconfig)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml

from ..addresses import host_port
from ..durations import parse_duration
from ..kubeapi.kubeconfig import build
from ..paths import DataDir
from ..pki import PKIError, load_pair
from .common import CLIError, data_dir_option, node_config


@click.command("kubeconfig")
@click.option("--user", default="admin", show_default=True, help="the user (certificate CN) kubectl acts as")
@click.option("--expiry", default="8760h", show_default=True, help="lifetime of the client certificate (Go duration)")
@click.option("--server", help="the API URL (default: this node's, https://<api address>:<api port>)")
@data_dir_option
def kubeconfig(user: str, expiry: str, server: str | None, data_dir: Path) -> None:
    """Print a kubeconfig with a client certificate for USER signed by the cluster CA (the key is
    only in the output: keep it like a password)."""
    if not user.strip() or any(c in user for c in "\n\r\0/"):
        raise CLIError(f"--user: {user!r} is not a user name (non-empty, no '/' or control characters)")
    try:
        lifetime = parse_duration(expiry, minimum=60)
    except ValueError as e:
        raise CLIError(f"--expiry: {e}") from None
    if server is not None and not server.startswith("https://"):
        raise CLIError(f"--server: {server!r} is not an https:// URL")
    data = DataDir.at(data_dir)
    if server is None:
        cfg = node_config(data)
        server = f"https://{host_port(cfg.api_address, cfg.api.port)}"
    try:
        ca = load_pair(data.ca_crt, data.ca_key)
    except PKIError as e:
        raise CLIError(f"cannot read the cluster CA of {data.root}: {e}") from None
    sys.stdout.write(yaml.safe_dump(build(ca, user, lifetime, server), sort_keys=False))
