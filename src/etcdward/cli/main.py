"""The `etcdward` entry point (console script and `python -m etcdward`).

A handful of read-only commands (fastpath.py) run without importing click: an `etcdward etcd
member-list` would otherwise spend most of its time importing. Everything else, and anything
the fast path does not recognise exactly, runs through the click group in app.py.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself costs a tenth of the fast path
if TYPE_CHECKING:
    from typing import Any


def main() -> None:
    import gc

    standard_descriptors_open()

    # The fast path's imports allocate enough for ~16 young and 2 older collections (~5 ms of
    # `status`) that free nothing in a process that lives for a few reads. Not enabled again
    # after it: the first allocation would then collect all that was deferred
    gc.disable()
    from .fastpath import handled

    if not handled(sys.argv[1:]):
        if sys.argv[1:2] != ["controller"]:
            gc.enable()
        # else the controller turns it on once started (startcost.py): the ~100k objects of
        # its start-up's imports live for good, and collecting them along the way costs ~15 % of a
        # start's CPU, which joiners starting side by side wait for
        from .app import main as click_main

        click_main()


def standard_descriptors_open() -> None:
    """Started with fd 0, 1 or 2 closed (`etcdward status >&-`): /dev/null in its place, as
    daemons do. Else the next file opened takes that number (asyncio's epoll, an etcd log) and gets
    what is meant for the terminal, and sys.stdout is None, which every print trips over; now it
    is `> /dev/null`: the command runs, its exit code says how it went."""
    import os

    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd (the lower ones are open by now)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, mode, closefd=False))


def __getattr__(name: str) -> Any:
    """`from etcdward.cli.main import cli` (and the rest of app.py) keeps working."""
    if name.startswith("__"):  # the import system asks for __path__ and the like: not app.py's
        raise AttributeError(name)
    from . import app

    return getattr(app, name)
