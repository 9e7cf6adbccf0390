"""`etcdward up`: a local multi-node playground. On a terminal it draws a live view of the
cluster as it forms and runs; otherwise (and with --once) it writes a plain log."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from ..playground import Playground, PlaygroundError
from ..store import Member
from .common import CLIError, print_table


@click.command("up")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True, help="number of controllers")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=Path("/tmp/etcdward-up"),
              show_default=True, help="where the nodes keep their data, configs and logs")
@click.option("--once", is_flag=True, help="form the cluster, verify it, print the table, stop and exit")
def up(nodes: int, root: Path, once: bool) -> None:
    """Run N controllers on 127.0.0.x: the first bootstraps, the rest join in parallel.

    On a terminal a live view shows the members, leaders, join progress and records, refreshed
    every second; otherwise (and with --once) progress is a plain log on stderr and the member
    table goes to stdout. Ctrl-C stops every controller and exits 0."""
    pg = Playground(root, nodes, say=lambda s: click.echo(s, err=True))
    live = sys.stdout.isatty() and not once

    def print_members(members: list[Member]) -> None:
        print_table(["ID", "NAME", "PEER URL", "VOTER"],
                    [[m.hex_id, m.name, m.peer_url, str(not m.is_learner).lower()] for m in
                     sorted(members, key=lambda m: m.name)])
        click.echo(f"cluster of {len(members)} verified; stopping" if once else
                   f"cluster running; data and logs in {pg.root}. Ctrl-C stops everything.", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if live:
            await run_live(pg, stop)
        else:
            await pg.run(stop, once, print_members)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # before the handlers were installed: a stop like any other
        pass
    except PlaygroundError as e:
        raise CLIError(f"up: {e}") from None
    finally:
        with sigint_ignored():  # a second Ctrl-C must not leave controllers behind
            pg.stop()


async def run_live(pg: Playground, stop: asyncio.Event) -> None:
    from rich.console import Console
    from rich.live import Live

    from ..playground.live import LiveView

    view = LiveView(pg)
    pg.say = view.say
    drawn = asyncio.Event()
    with Live(console=Console(), auto_refresh=False, vertical_overflow="visible") as screen:
        drawer = asyncio.create_task(view.run(screen, drawn))
        try:
            await pg.run(stop, False, lambda ms: view.say(f"cluster of {len(ms)} formed and verified; data and logs "
                                                          f"in {pg.root}"))
        finally:
            view.stopping = True
            await asyncio.to_thread(pg.stop)  # the view keeps drawing the controllers as they exit
            drawn.set()
            await drawer
            await view.close()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
