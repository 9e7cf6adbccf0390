"""What the tests need from the machine, and what happens when something is missing.

A test names its prerequisites with ``@pytest.mark.needs("root", "unshare")`` (every test that
uses the ``cluster`` fixture needs "etcd" without saying so).  When one is missing:

- plain ``pytest`` (a developer's laptop) skips the test, naming what is missing;
- with ``ETCDWARD_REQUIRE_PREREQS=1`` -- set by ``bash scripts/run.sh test``, the README's test
  command and so CI -- the test fails instead, naming it: a broken install step must never show
  up as a green run.  Under the flag every other skip fails too (the skip reason is kept), unless
  the test is marked ``allow_skip("reason")`` because that skip is not about a missing
  prerequisite (only a skip whose reason contains that text is let through).

tests/conftest.py wires the hooks below in; tests/test_prereqs.py loads this module as a plugin
(``-p tests.prereqs``) to test the mechanism on a generated test.
"""
from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

REQUIRE_ENV = "ETCDWARD_REQUIRE_PREREQS"


def required() -> bool:
    """True when a missing prerequisite (or any unmarked skip) must fail the run."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def _executable(path: str | None) -> bool:
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)  # type: ignore[arg-type]


def _etcd() -> str | None:
    path = os.environ.get("ETCDWARD_ETCD_BIN") or shutil.which("etcd")
    if _executable(path):
        return None
    where = f" (ETCDWARD_ETCD_BIN={path} is not an executable file)" if os.environ.get("ETCDWARD_ETCD_BIN") else ""
    return f"no etcd binary{where}: apt-get install etcd-server, or set ETCDWARD_ETCD_BIN"


def _etcdctl() -> str | None:
    # the same lookup as tests/scenarios/common.py
    path = os.environ.get("ETCDWARD_ETCDCTL") or shutil.which("etcdctl") or "/usr/bin/etcdctl"
    if _executable(path):
        return None
    return f"no etcdctl at {path}: apt-get install etcd-client, or set ETCDWARD_ETCDCTL"


def _root() -> str | None:
    return None if os.geteuid() == 0 else "not root (needs root: namespaces, mounts)"


def _tool(name: str, package: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if shutil.which(name) else f"no `{name}` on PATH: apt-get install {package}"
    return check


def _netbed() -> str | None:
    from tests import netbed  # root, ip, iptables, nsenter, unshare, ... and a namespace probe

    ok, why = netbed.netbed_available()
    return None if ok else f"network-namespace test bed (tests/netbed.py) unavailable: {why}"


def _etcd_version(version: str) -> Callable[[], str | None]:
    def check() -> str | None:
        from tests.etcdbins import etcd_of

        return None if etcd_of(version) else (f"no etcd {version} binary: `bash scripts/etcd.sh {version}` fetches it "
                                              f"(or set ETCDWARD_ETCD_{version.replace('.', '_')})")
    return check


CHECKS: dict[str, Callable[[], str | None]] = {
    "etcd-3.4.23": _etcd_version("3.4.23"),
    "etcd-3.5.30": _etcd_version("3.5.30"),
    "etcd": _etcd,
    "etcdctl": _etcdctl,
    "root": _root,
    "unshare": _tool("unshare", "util-linux"),
    "systemd-analyze": _tool("systemd-analyze", "systemd"),
    "promtool": _tool("promtool", "prometheus"),
    "openssl": _tool("openssl", "openssl"),
    "netbed": _netbed,
}


@functools.cache
def missing(name: str) -> str | None:
    """None when prerequisite `name` is there, else what is missing (and how to get it)."""
    return CHECKS[name]()


def needs(*names: str) -> pytest.MarkDecorator:
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown prerequisites {unknown}; known: {sorted(CHECKS)}")
    return pytest.mark.needs(*names)


def require(*names: str) -> None:
    """Skip (plain pytest) or fail (REQUIRE_ENV set) unless every prerequisite is there."""
    gone = [f"{n}: {why}" for n in names if (why := missing(n))]
    if gone:
        if required():
            pytest.fail(f"missing prerequisite -- {'; '.join(gone)} ({REQUIRE_ENV} is set, so this fails "
                        "instead of skipping)", pytrace=False)
        pytest.skip(f"missing prerequisite -- {'; '.join(gone)}")


def _fail_instead_of_skip(rep: Any, allowed: list[str]) -> None:
    """Under REQUIRE_ENV a skipped report becomes a failure, unless its reason contains one of
    `allowed` (the texts of the test's allow_skip markers)."""
    if not required() or not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if any(a in reason for a in allowed):
        return
    rep.outcome = "failed"
    rep.longrepr = (f"skipped ({reason}), but {REQUIRE_ENV} is set: the test command must not pass by "
                    "skipping. Install what is missing, or mark the test allow_skip(reason) if the skip is "
                    "not about a missing prerequisite.")


# ---- hooks (re-exported by tests/conftest.py) -------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(*names): prerequisites of the test (tests/prereqs.py CHECKS); "
                            "a missing one skips, or fails under " + REQUIRE_ENV)
    config.addinivalue_line("markers", "allow_skip(reason): under " + REQUIRE_ENV + " this test may still "
                            "skip with this reason (a skip that is not about a missing prerequisite)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(needs("etcd"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    names = [n for m in item.iter_markers("needs") for n in m.args]
    for n in names:
        if n not in CHECKS:
            pytest.fail(f"unknown prerequisite {n!r} in a needs marker; known: {sorted(CHECKS)}", pytrace=False)
    require(*dict.fromkeys(names))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    rep = yield
    _fail_instead_of_skip(rep, [m.args[0] for m in item.iter_markers("allow_skip") if m.args])
    return rep


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    rep = yield  # a module that skips itself (pytest.skip(allow_module_level=True), importorskip)
    _fail_instead_of_skip(rep, [])
    return rep
