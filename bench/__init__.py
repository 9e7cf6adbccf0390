"""Benchmarks (not timed tests): `python -m bench.<name>`; see README.

Every benchmark measures etcdward as installed, with its bytecode compiled (a wheel install
compiles it). Where PYTHONDONTWRITEBYTECODE is set and nothing is compiled (CI sandboxes, an
editable install), every controller and CLI process would first compile etcdward's modules from
source: ~0.3 s of CPU per process, which measures the environment, not etcdward. So the package
compiles them once into a temporary PYTHONPYCACHEPREFIX that every process it starts inherits.
ETCDWARD_BENCH_SOURCE=1 keeps the environment as it is (bench.startup's --no-bytecode sets it).
"""

from __future__ import annotations

import atexit
import compileall
import os
import shutil
import subprocess
import sys
import tempfile


def _installed_bytecode() -> None:
    if os.environ.get("ETCDWARD_BENCH_SOURCE") == "1" or not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    import etcdward

    prefix = tempfile.mkdtemp(prefix="etcdward-bench-pycache-")
    atexit.register(shutil.rmtree, prefix, True)
    sys.pycache_prefix = prefix  # compileall (py_compile) writes where the children will look
    for where in etcdward.__path__:  # a namespace package: every folder it is found in
        compileall.compile_dir(where, quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    # The prefix is where Python then looks for the bytecode of every module, the standard library
    # and site-packages included, not only etcdward's: without this import of all of etcdward (and
    # so of everything it imports) the first process of a run compiled them all (n1 of run 1 of
    # bench.formation spent ~1 s more in Python start-up than the next runs' n1).
    subprocess.run([sys.executable, "-c", WARM_UP], check=True)


WARM_UP = """
import importlib, pkgutil, etcdward
for m in pkgutil.walk_packages(etcdward.__path__, "etcdward."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
"""


_installed_bytecode()
