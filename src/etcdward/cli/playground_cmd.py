"""`etcdward up`: a local multi-node playground."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from ..playground import Playground, PlaygroundError
from .common import CLIError, print_table


@click.command("up")
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True, help="number of controllers")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=Path("/tmp/etcdward-up"),
              show_default=True, help="where the nodes keep their data, configs and logs")
@click.option("--once", is_flag=True, help="form the cluster, verify it, print the table, stop and exit")
def up(nodes: int, root: Path, once: bool) -> None:
    """Run N controllers on 127.0.0.x: the first bootstraps, the rest join in parallel."""
    pg = Playground(root, nodes, say=lambda s: click.echo(s, err=True))

    async def main() -> None:
        members = await pg.form()
        await pg.verify()
        print_table(["ID", "NAME", "PEER URL", "VOTER"],
                    [[m.hex_id, m.name, m.peer_url, str(not m.is_learner).lower()] for m in
                     sorted(members, key=lambda m: m.name)])
        if once:
            click.echo(f"cluster of {len(members)} verified; stopping", err=True)
            return
        click.echo(f"cluster running; data and logs in {pg.root}. Ctrl-C stops everything.", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            dead = [n.name for n in pg.nodes if not n.alive()]
            if dead:
                raise PlaygroundError(f"controller(s) {', '.join(dead)} exited; see logs in {pg.root}")
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    try:
        asyncio.run(main())
    except PlaygroundError as e:
        raise CLIError(f"up: {e}") from None
    finally:
        pg.stop()
