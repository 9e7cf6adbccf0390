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


_installed_bytecode()
