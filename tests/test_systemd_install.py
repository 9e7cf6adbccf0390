"""`etcdward install controller` / `etcdward uninstall`, written to a temp unit dir (the hidden
--unit-dir), and the controller as the unit runs it: `--log-format json` on a real etcd."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from etcdward import systemdunit
from etcdward.cli.main import main
from etcdward.logformat import REQUIRED_KEYS
from etcdward.supervisor import STOP_GRACE
from tests.cluster import Cluster, wait_for
from tests.prereqs import needs


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def etcdward(*args: str) -> Ran:
    """`etcdward ARGS` in this process, through the CLI's real error boundary (main()): a
    subprocess would spend most of these tests starting Python."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "argv", ["etcdward", *args]), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Ran(code, out.getvalue(), err.getvalue())


def install(unit_dir: Path, *args: str) -> Ran:
    return etcdward("install", "controller", "--unit-dir", str(unit_dir), *args)


def unit_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    cfg = tmp_path / "etc" / "config.yaml"
    cfg.parent.mkdir()
    cfg.write_text("spec:\n  storage:\n    etcd:\n      clientPort: 23790\n")
    token = tmp_path / "etc" / "token"
    token.write_text("secret\n")
    return {"config": cfg, "token": token, "units": tmp_path / "units", "data": tmp_path / "my data%dir"}


@needs("systemd-analyze")
def test_unit_passes_systemd_analyze_verify(inputs: dict[str, Path]) -> None:
    p = install(inputs["units"], "-c", str(inputs["config"]), "--data-dir", str(inputs["data"]),
                "--token-file", str(inputs["token"]), "--log-format", "json")
    assert p.returncode == 0, p.stderr
    unit = inputs["units"] / "etcdward.service"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    text = unit.read_text()
    v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (v.returncode, v.stdout + v.stderr) == (0, ""), text + v.stdout + v.stderr
    argv = systemdunit.exec_start_argv(text)
    assert Path(argv[0]).is_absolute() and os.access(argv[0], os.X_OK), argv
    assert argv[1:] == ["controller", "-c", str(inputs["config"]), "--data-dir", str(inputs["data"]),
                        "--token-file", str(inputs["token"]), "--log-format", "json"], argv
    s = unit_settings(text)
    assert s["Restart"] == "on-failure" and s["RestartSec"] == "5s" and s["KillMode"] == "mixed"
    assert int(s["TimeoutStopSec"].removesuffix("s")) > STOP_GRACE and int(s["LimitNOFILE"]) >= 65536
    assert s["After"] == s["Wants"] == "network-online.target" and s["WantedBy"] == "multi-user.target"


def test_dry_run_prints_the_unit_and_writes_nothing(inputs: dict[str, Path]) -> None:
    p = install(inputs["units"], "--data-dir", str(inputs["data"]), "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "ExecStart=" in p.stdout and "[Install]" in p.stdout
    assert not inputs["units"].exists() and not inputs["data"].exists()


@pytest.mark.parametrize("flags, named", [
    (["--data-dir", "relative/dir"], "--data-dir relative/dir: must be an absolute path"),
    (["-c", "{tmp}/missing.yaml"], "-c/--config {tmp}/missing.yaml: no such file"),
    (["-c", "{tmp}/bad.yaml"], "-c/--config: {tmp}/bad.yaml: spec.bogus: unknown key"),
    (["--token-file", "{tmp}/no-token"], "--token-file {tmp}/no-token: no such file"),
])
def test_bad_flags_are_refused_naming_the_flag(tmp_path: Path, flags: list[str], named: str) -> None:
    (tmp_path / "bad.yaml").write_text("spec:\n  bogus: 1\n")
    p = install(tmp_path / "units", *(f.format(tmp=tmp_path) for f in flags))
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith(f"etcdward: {named.format(tmp=tmp_path)}"), p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "units").exists()


def test_a_different_unit_is_replaced_only_with_force(tmp_path: Path) -> None:
    units = tmp_path / "units"
    assert install(units, "--data-dir", "/var/lib/a").returncode == 0
    before = (units / "etcdward.service").read_text()
    assert "already up to date" in install(units, "--data-dir", "/var/lib/a").stdout
    p = install(units, "--data-dir", "/var/lib/b")
    assert p.returncode == 1 and "--force" in p.stderr and (units / "etcdward.service").read_text() == before
    assert install(units, "--data-dir", "/var/lib/b", "--force").returncode == 0
    assert systemdunit.unit_data_dir((units / "etcdward.service").read_text()) == Path("/var/lib/b")


@pytest.mark.parametrize("word", ["/plain/path", "/with space", "/per%cent", "/dol$lar", 'quo"te', "back\\slash", ";"])
def test_exec_start_words_round_trip(word: str) -> None:
    spec = systemdunit.ServiceSpec(command=("/usr/bin/etcdward",), data_dir=Path(word))
    assert systemdunit.exec_start_argv(systemdunit.render_unit(spec)) == spec.argv()


def test_uninstall_removes_the_unit_and_its_enable_link(tmp_path: Path) -> None:
    units = tmp_path / "units"
    assert install(units, "--data-dir", str(tmp_path / "idle")).returncode == 0
    (units / "multi-user.target.wants").mkdir()
    (units / "multi-user.target.wants" / "etcdward.service").symlink_to(units / "etcdward.service")
    p = etcdward("uninstall", "--unit-dir", str(units))
    assert p.returncode == 0 and "systemctl daemon-reload" in p.stdout, p.stderr
    assert list(units.rglob("*.service")) == []
    again = etcdward("uninstall", "--unit-dir", str(units))
    assert again.returncode == 0 and "nothing to remove" in again.stdout


@dataclass
class ServedRun:
    """One controller started the way the unit starts it, with what happened around it."""
    log_lines: list[str]
    uninstall_while_running: Ran
    unit_after_refusal: bool
    exit_code: int | None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedRun:
    root = tmp_path_factory.mktemp("served")
    cl = Cluster(root)
    try:
        n = cl.node("n1")
        n.write_config(n.config())
        units = root / "units"
        p = install(units, "-c", str(n.config_file), "--data-dir", str(n.data.root), "--log-format", "json")
        assert p.returncode == 0, p.stderr
        args = systemdunit.exec_start_argv((units / "etcdward.service").read_text())
        n.start(None, *args[args.index("--log-format"):])  # the flags after -c/--data-dir, as the unit has them
        n.wait_ready(60)
        # etcd answering is not yet the controller running its voter services: wait for those to log
        wait_for(lambda: "is now the reconciler leader" in n.log(), 30, "reconciler leader", node=n)
        refused = etcdward("uninstall", "--unit-dir", str(units))
        still_there = (units / "etcdward.service").exists()
        code = n.stop()
        banner = n.log().index("\n=== start ")
        lines = n.log()[banner:].splitlines()[2:]  # after the blank line and the banner
        return ServedRun(lines, refused, still_there, code)
    finally:
        cl.teardown()


@needs("etcd")
def test_uninstall_is_refused_while_a_controller_runs_on_the_units_data_dir(served: ServedRun) -> None:
    p = served.uninstall_while_running
    assert p.returncode == 1 and "a controller is running on the unit's data dir" in p.stderr, p.stderr
    assert "etcdward controller (pid " in p.stderr and served.unit_after_refusal


@needs("etcd")
def test_controller_logs_one_json_object_per_line(served: ServedRun) -> None:
    assert served.exit_code == 0 and served.log_lines, served.log_lines
    objs = []
    for line in served.log_lines:
        obj = json.loads(line)  # every line of stdout and stderr
        assert all(isinstance(obj.get(k), str) for k in REQUIRED_KEYS), line
        objs.append(obj)
    messages = [o["message"] for o in objs]
    assert any(m.startswith("etcd ready: member n1") for m in messages), messages
    assert any(m.endswith("is now the reconciler leader") for m in messages), messages
    assert any(m.startswith("stopping etcd") for m in messages), messages
