"""`python ctlwrap.py ARGS` == `python -m etcdward ARGS`, plus one diagnostic: SIGUSR1 prints
the stack of every asyncio task and thread to stderr (the controller log).  The harness sends
it to a controller that does not stop after SIGTERM, before killing it."""
import asyncio
import faulthandler
import runpy
import signal
import sys


def _dump(signum, frame):  # runs in the main thread, inside the event loop when there is one
    print("=== harness: SIGUSR1, asyncio tasks and threads ===", file=sys.stderr, flush=True)
    try:
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:
        tasks = set()
    for t in tasks:
        print(f"--- {t!r}", file=sys.stderr)
        t.print_stack(file=sys.stderr)
    sys.stderr.flush()
    faulthandler.dump_traceback(all_threads=True)


signal.signal(signal.SIGUSR1, _dump)
sys.argv = ["etcdward", *sys.argv[1:]]
runpy.run_module("etcdward", run_name="__main__", alter_sys=True)
