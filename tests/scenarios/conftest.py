"""Scenario suite plumbing: seeds, --soak, the world fixture, kept logs, the summary table.

    pytest tests/scenarios                          default seeds (what CI runs)
    pytest tests/scenarios --soak [--soak-seeds N]  N random seeds for each randomised scenario
                                                    (kills, storm, leader partition; default 20)
    ETCDWARD_SCENARIO_SEED=1234 pytest tests/scenarios -k kills    replay one seed
    ETCDWARD_SCENARIO_STRICT=1                      known (reported) bugs fail instead of being noted
    ETCDWARD_SCENARIO_SOAK=N                        same as --soak --soak-seeds N (works from `pytest tests`)
    ETCDWARD_SCENARIO_KEEP=1                        keep every run's folder, not only failed ones

`--soak` is registered here, so it is known when pytest is pointed at tests/scenarios (this
conftest is then an initial conftest); from `pytest tests` use ETCDWARD_SCENARIO_SOAK.
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import harness
from .harness import OUTPUT_ROOT, World, safe_name

DEFAULT_SEEDS = (1, 2)  # CI: fixed, so a red build replays exactly with the same seed
DEFAULT_RSEED = 3  # the other randomised scenarios (storm, leader partition): one seed in CI
SOAK_SEEDS = 20
SEED_ENV = "ETCDWARD_SCENARIO_SEED"
SOAK_ENV = "ETCDWARD_SCENARIO_SOAK"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("etcdward scenarios")
    group.addoption("--soak", action="store_true", help="run many random seeds of the kill scenario")
    group.addoption("--soak-seeds", type=int, default=SOAK_SEEDS, help="how many seeds --soak runs")


def _opt(config: pytest.Config, name: str, default: Any) -> Any:
    try:
        return config.getoption(name)
    except ValueError:  # this conftest was not an initial one: option not registered
        return default


def seeds(config: pytest.Config, default: tuple[int, ...] = DEFAULT_SEEDS) -> list[int]:
    if os.environ.get(SEED_ENV):
        return [int(os.environ[SEED_ENV], 0)]
    soak = int(os.environ.get(SOAK_ENV) or 0)
    if not soak and _opt(config, "soak", False):
        soak = _opt(config, "soak_seeds", SOAK_SEEDS)
    if soak:
        rnd = random.SystemRandom()
        return [rnd.randrange(1, 2**31) for _ in range(soak)]
    return list(default)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # "seed": the kill scenario (DEFAULT_SEEDS in CI); "rseed": other randomised scenarios, one
    # fixed seed in CI; both take ETCDWARD_SCENARIO_SEED, and --soak gives both many seeds.
    if "seed" in metafunc.fixturenames:
        metafunc.parametrize("seed", seeds(metafunc.config), ids=lambda s: f"seed={s}")
    if "rseed" in metafunc.fixturenames:
        metafunc.parametrize("rseed", seeds(metafunc.config, default=(DEFAULT_RSEED,)), ids=lambda s: f"seed={s}")


def pytest_sessionstart(session: pytest.Session) -> None:
    # Beds left behind by a scenario run that was killed (its owner process is dead).
    ok, _ = harness.netbed_ok()
    if ok:
        harness.cleanup_stale_beds()
        # a CI timeout sends SIGTERM: close every bed (kill its processes, delete its namespaces)
        harness.install_sigterm_cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[Callable[..., World]]:
    """make(n, seed=None) -> a World of n nodes; closed at teardown.  The run's folder
    (test-output/scenarios/<test>/) is kept when the test failed (or xfailed), else deleted."""
    made: list[World] = []
    base = OUTPUT_ROOT / safe_name(request.node.name)

    def make(n: int, seed: int | None = None) -> World:
        w = World(request.node.name, n, outdir=base if not made else base.with_name(f"{base.name}-{len(made)}"),
                  seed=seed)
        made.append(w)
        _outdirs[request.node.nodeid] = w.outdir
        # under xdist the summary is printed by the controlling process: the folder travels in the report
        request.node.user_properties.append(("scenario_outdir", str(w.outdir)))
        print(f"\n[scenario] {request.node.nodeid}: bed {w.bed.prefix}, {n} nodes, output {w.outdir}"
              + (f", seed {seed} (replay: {SEED_ENV}={seed})" if seed is not None else ""))
        return w

    yield make
    rep = getattr(request.node, "rep_call", None)
    keep = rep is None or rep.failed or hasattr(rep, "wasxfail")
    for w in made:
        w.close(keep=keep)
        if keep:
            print(f"[scenario] logs kept in {w.outdir}")


# ---- summary table -----------------------------------------------------------------------

_results: dict[str, dict[str, Any]] = {}
_outdirs: dict[str, Any] = {}  # nodeid -> the run's output folder


def _scenario_of(nodeid: str) -> str | None:
    if "scenarios/" not in nodeid.replace("\\", "/"):
        return None
    return nodeid.split("::")[-1].split("[")[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = _scenario_of(report.nodeid)
    if name is None:
        return
    for key, value in report.user_properties:
        if key == "scenario_outdir":
            _outdirs[report.nodeid] = Path(value)
    r = _results.setdefault(name, {"items": {}, "duration": 0.0})
    r["duration"] += report.duration
    item = r["items"].setdefault(report.nodeid, "passed")
    if report.when == "call" or report.outcome != "passed":
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.passed else "xfailed"
        else:
            outcome = report.outcome
        if item == "passed" or outcome == "failed":
            r["items"][report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _results:
        return
    tr = terminalreporter
    tr.section("etcdward scenarios")
    rows = [("scenario", "runs", "passed", "failed", "xfail", "skipped", "duration")]
    total = 0.0
    for name, r in _results.items():
        outs = list(r["items"].values())
        runs = sum(1 for o in outs if o != "skipped")
        rows.append((name, str(runs), str(outs.count("passed") + outs.count("xpassed")), str(outs.count("failed")),
                     str(outs.count("xfailed")), str(outs.count("skipped")), f"{r['duration']:.1f}s"))
        total += r["duration"]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        tr.write_line("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            tr.write_line("  ".join("-" * w for w in widths))
    tr.write_line(f"total scenario time {total:.1f}s ({time.strftime('%H:%M:%S')})")
    failed = [nid for r in _results.values() for nid, o in r["items"].items() if o == "failed"]
    for nid in failed:
        out = _outdirs.get(nid)
        tr.write_line(f"failed: {nid}" + (f"  (logs: {out.relative_to(harness.REPO)}/)" if out else ""))
        if "seed=" in nid:
            seed = nid.split("seed=")[1].rstrip("]")
            tr.write_line(f"  replay: {SEED_ENV}={seed} .venv/bin/python -m pytest tests/scenarios -k "
                          f"{nid.split('::')[-1].split('[')[0]}")

