"""Shared CLI plumbing: data-dir/config resolution, errors, one output function."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import yaml

from .. import datalock
from .. import logformat
from ..durations import MAX_DURATION, check_seconds
from ..paths import DEFAULT_DATA_DIR, DataDir

if TYPE_CHECKING:
    from .. import config as cfgmod
    from ..store import Store

T = TypeVar("T")


class CLIError(click.ClickException):
    """Printed as the bare message on stderr; exit code 1."""

    def show(self, file: Any = None) -> None:
        logformat.fatal(self.message)  # as is, or one JSON line when the controller logs JSON


class Seconds(click.ParamType):
    """A click option of seconds: finite, within bounds (nan, inf and negatives are refused)."""

    name = "seconds"

    def __init__(self, minimum: float, maximum: float = MAX_DURATION.total_seconds()) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        try:
            return check_seconds(number, minimum=self.minimum, maximum=self.maximum)
        except ValueError as e:
            self.fail(str(e), param, ctx)


def data_dir_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR,
                        show_default=True, help="etcdward data directory")(f)


@contextlib.contextmanager
def locked_data_dir(data: DataDir, command: str) -> Iterator[None]:
    """Hold the data-dir lock while a command changes the data dir; refuse with the holder's pid.

        with locked_data_dir(data, "restore"):
            ...
    """
    try:
        lock = datalock.acquire(data, command)
    except datalock.DataDirBusy as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot lock {data.lock_file}: {e.strerror}") from None
    with lock:
        yield


def node_config(data: DataDir) -> cfgmod.Config:
    """The effective config the controller wrote to state/ (ports, addresses)."""
    from .. import config as cfgmod  # pydantic: imported only by commands that need the whole config

    p = data.effective_config
    if not p.exists():
        # Never guess the default ports: another node's etcd may answer on them.
        raise CLIError(f"no effective config in {p}: is {data.root} the data dir of a controller that has started "
                       "(--data-dir)? The controller writes this file each time it starts")
    try:
        cfg = cfgmod.load(p)
    except cfgmod.ConfigError as e:
        raise CLIError(f"{e} (the controller writes this file; start it again or fix the file)") from None
    if not cfg.etcd.peer_address:  # an effective config is fully explicit; this one would mean default ports
        raise CLIError(f"{p}: not an effective config (no spec.storage.etcd.peerAddress); the controller writes this "
                       "file each time it starts: start it again or fix the file")
    return cfg


def client_port(data: DataDir) -> int:
    """The local etcd's client port, from the effective config. Read without the config schema
    (pydantic: ~0.2 s of start-up, a sixth of an `etcdctl snapshot save` that `etcdward backup`
    is measured against): the controller wrote this file fully explicit, from a validated config.
    Anything unexpected in it goes through the full load, which names what is wrong."""
    try:
        doc = yaml.safe_load(data.effective_config.read_bytes())
        port = doc["spec"]["storage"]["etcd"]["clientPort"]
        if doc["spec"]["storage"]["etcd"]["peerAddress"] and type(port) is int and 1 <= port <= 65535:
            return port
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        pass
    return node_config(data).etcd.client_port


def open_store(data: DataDir, timeout: float = 5.0) -> Store:
    from ..store import local_store  # gRPC: imported only by commands that talk to etcd

    ca, _ = data.etcd_cert("ca")
    if not ca.exists():
        raise CLIError(f"no etcd certificates under {data.etcd_pki}: is {data.root} an etcdward data dir? (--data-dir)")
    port = client_port(data)
    try:
        return local_store(data, port, timeout=timeout)
    except OSError as e:
        raise CLIError(f"cannot read the client certificate for the local etcd: {e.filename}: {e.strerror}") from None


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def with_store(data: DataDir, fn: Callable[[Store], Awaitable[T]], timeout: float = 5.0) -> T:
    async def go() -> T:
        store = open_store(data, timeout)
        async with store:
            return await fn(store)

    return run(go())


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """kubectl-style plain table (no box), stable for scripts that use awk."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    Console(width=250, soft_wrap=True).print(table)


def print_data(obj: Any, fmt: str) -> None:
    if fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(obj, sort_keys=False))
    else:
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
