"""Shared CLI plumbing: data-dir/config resolution, errors, one output function."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .. import datalock
from .. import logformat
from ..durations import MAX_DURATION, check_seconds
from ..paths import DEFAULT_DATA_DIR, DataDir, read_client_port

if TYPE_CHECKING:
    from ..config import Config
    from ..store import Store
    from ..store.gateway import GatewayReader

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


def node_config(data: DataDir) -> Config:
    """The effective config the controller wrote to state/ (ports, addresses)."""
    p = data.effective_config
    if not p.exists():
        # Never guess the default ports: another node's etcd may answer on them.
        raise CLIError(f"no effective config in {p}: is {data.root} the data dir of a controller that has started "
                       "(--data-dir)? The controller writes this file each time it starts")
    from .. import config as cfgmod  # pydantic: imported by the commands that need it only

    try:
        cfg = cfgmod.load(p)
    except cfgmod.ConfigError as e:
        raise CLIError(f"{e} (the controller writes this file; start it again or fix the file)") from None
    if not cfg.etcd.peer_address:  # an effective config is fully explicit; this one would mean default ports
        raise CLIError(f"{p}: not an effective config (no spec.storage.etcd.peerAddress); the controller writes this "
                       "file each time it starts: start it again or fix the file")
    return cfg


def node_client_port(data: DataDir) -> int:
    """The local etcd's client port from the effective config, for a command that needs nothing
    else: read without pydantic (whose models take longer to build than such a command runs)
    when the file is as the controller wrote it; anything else goes through node_config() and
    is refused with its error."""
    hinted = read_client_port(data)  # the controller's JSON next to the config: no YAML parser
    if hinted is not None:
        return hinted
    import yaml

    try:
        doc = yaml.load(data.effective_config.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        etcd = doc["spec"]["storage"]["etcd"]
        port, peer = etcd["clientPort"], etcd["peerAddress"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return node_config(data).etcd.client_port
    if type(port) is int and 0 < port < 65536 and isinstance(peer, str) and peer:
        return port
    return node_config(data).etcd.client_port


def open_store(data: DataDir, timeout: float = 5.0) -> Store:
    from ..store import local_store  # asyncio and ssl: imported only by commands that write to etcd

    ca, _ = data.etcd_cert("ca")
    if not ca.exists():
        raise CLIError(f"no etcd certificates under {data.etcd_pki}: is {data.root} an etcdward data dir? (--data-dir)")
    port = node_client_port(data)
    try:
        return local_store(data, port, timeout=timeout)
    except OSError as e:
        raise CLIError(f"cannot read the client certificate for the local etcd: {e.filename}: {e.strerror}") from None


def gateway_reader(data: DataDir, timeout: float = 5.0) -> GatewayReader:
    """Like open_store, for a command that only reads: a blocking reader on the C TLS module, no asyncio or ssl.py to import."""
    from ..store.gateway import GatewayReader

    ca, _ = data.etcd_cert("ca")
    if not ca.exists():
        raise CLIError(f"no etcd certificates under {data.etcd_pki}: is {data.root} an etcdward data dir? (--data-dir)")
    port = node_client_port(data)
    crt, key = data.etcd_cert("client")
    try:
        return GatewayReader(f"127.0.0.1:{port}", ca, crt, key, timeout=timeout)
    except OSError as e:
        raise CLIError(f"cannot read the client certificate for the local etcd: {e.filename or crt}: "
                       f"{e.strerror}") from None


def run(coro: Awaitable[T]) -> T:
    import asyncio

    return asyncio.run(coro)  # type: ignore[arg-type]


def with_store(data: DataDir, fn: Callable[[Store], Awaitable[T]], timeout: float = 5.0) -> T:
    async def go() -> T:
        store = open_store(data, timeout)
        async with store:
            return await fn(store)

    return run(go())


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from .output import table_text

    sys.stdout.write(table_text(columns, rows))


def print_data(obj: Any, fmt: str) -> None:
    from .output import data_text

    sys.stdout.write(data_text(obj, fmt))
