"""The fast path (cli/fastpath.py) prints exactly what click prints: the top-level help at several
terminal widths, its argv parsing against click's (hypothesis), and each recognised command
run both ways (ETCDWARD_NO_FASTPATH=1: click) against one real node, stdout, stderr and exit
code compared byte for byte - including argv the fast path must hand to click."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdward.cli import fastpath
from etcdward.cli.commandlist import EAGER_HELP, top_help
from etcdward.cli.main import cli
from tests.cluster import Cluster, Node, wait_for
from tests.prereqs import needs


@pytest.mark.parametrize("columns", ["20", "50", "52", "60", "79", "80", "120"])
def test_top_help_is_clicks(columns: str) -> None:
    env = {**os.environ, "COLUMNS": columns, fastpath.OFF: "1"}
    clicks = subprocess.run([sys.executable, "-m", "etcdward", "--help"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert clicks.returncode == 0 and clicks.stderr == ""
    assert top_help(int(columns)) + "\n" == clicks.stdout


@pytest.mark.parametrize("columns", [None, "", "0", "-3", "x", "57"])
def test_terminal_width_is_shutils(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert fastpath.terminal_columns() == shutil.get_terminal_size().columns


def test_eager_help_is_each_commands_own_first_line() -> None:
    ctx = click.Context(cli)
    for name, text in EAGER_HELP.items():
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and click.Command(name, help=text).get_short_help_str(500) == cmd.get_short_help_str(500)


# -- argv parsing: whatever the fast path accepts, click parses to the same values -------------

def _click_command(argv: list[str]) -> click.Command:
    ctx = click.Context(cli)
    group = cli.get_command(ctx, argv[0])
    assert isinstance(group, click.Group)
    cmd = group.get_command(ctx, argv[1])
    assert cmd is not None
    return cmd


TOKENS = st.sampled_from(["--data-dir", "/tmp/d", "--data-dir=/tmp/e", "-o", "--output", "json", "table", "wide",
                          "yaml", "-ojson", "-owide", "--output=table", "--output=", "-o=json", "n2", "N2", "-",
                          "--", "-h", "--help", "--bogus", "", "-x"])


@settings(max_examples=300, deadline=None)
@given(head=st.sampled_from([["etcd", "member-list"], ["get", "etcdmembers"], ["get", "em"]]),
       rest=st.lists(TOKENS, max_size=6))
def test_accepted_argv_parses_as_click_parses_it(head: list[str], rest: list[str]) -> None:
    try:
        fastpath.recognise([*head, *rest])
    except fastpath.NotMine:
        return
    spec = {"--data-dir": None, "-o": ("json", "table", "wide") if head[0] == "etcd" else ("table", "wide", "json")}
    opts, args = fastpath.parse(rest, spec)
    ctx = _click_command(head).make_context("etcdward", list(rest))  # raises on a usage error
    assert str(ctx.params["data_dir"]) == opts.get("--data-dir", "/var/lib/etcdward")
    assert ctx.params["output"] == opts.get("-o", "json" if head[0] == "etcd" else "table")
    assert ctx.params.get("name") == (args[0] if args else None)


# -- both ways against a real node ---------------------------------------------------------------

@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    cluster = Cluster(tmp_path_factory.mktemp("fastpath"))
    try:
        n1 = cluster.bootstrap("n1")
        wait_for(lambda: "n1" in n1.cli("get", "em", "--data-dir", str(n1.data.root), check=False).stdout, 30,
                 "n1's record", node=n1)
        yield n1
    finally:
        cluster.teardown()


def both_ways(argv: list[str]) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    def run(off: str) -> tuple[int, str, str]:
        env = {**os.environ, fastpath.OFF: off}
        p = subprocess.run([sys.executable, "-m", "etcdward", *argv], capture_output=True, text=True, env=env,
                           timeout=60)
        return p.returncode, p.stdout, p.stderr

    return run(""), run("1")


@needs("etcd")
def test_each_argv_prints_the_same_both_ways(node: Node, tmp_path: Path) -> None:
    d = str(node.data.root)
    a_file = tmp_path / "file"
    a_file.write_text("")
    argvs = [["--help"], ["-h"],
             ["etcd", "member-list", "--data-dir", d], ["etcd", "member-list", f"--data-dir={d}", "-o", "table"],
             ["etcd", "member-list", "-owide", "--data-dir", d], ["etcd", "member-list", "--output=json", "--data-dir", d],
             ["etcd", "member-list", "--data-dir", str(tmp_path / "none")], ["etcd", "member-list", "--data-dir", str(a_file)],
             ["etcd", "member-list", "-o", "yaml", "--data-dir", d], ["etcd", "member-list", "--help"],
             ["get", "etcdmembers", "--data-dir", d], ["get", "em", "n1", "-o", "wide", "--data-dir", d],
             ["get", "etcdmember", "--data-dir", d, "-ojson"], ["get", "em", "n1", "--data-dir", d, "--output", "json"],
             ["get", "em", "nosuch", "--data-dir", d], ["get", "em", "Bad_Name", "--data-dir", d],
             ["get", "em", "-o", "yaml", "--data-dir", d], ["get", "em", "a", "b", "--data-dir", d]]
    for argv in argvs:
        fast, slow = both_ways(argv)
        if argv[0] == "get":  # the AGE column moves between the two runs: mask it, nothing else
            fast, slow = _mask_age(fast), _mask_age(slow)
        assert fast == slow, argv


def _mask_age(result: tuple[int, str, str]) -> tuple[int, str, str]:
    code, out, err = result
    return code, re.sub(r"(?m)  (\d+[smhdy])+ *$", "  AGE", out), err


@needs("etcd")
@pytest.mark.parametrize("where", ["closed pipe", "full disk", "closed fd"])
def test_unwritable_stdout_ends_as_click_ends_it(node: Node, where: str) -> None:
    """A reader that went away (`| head -0`) or /dev/full: the exit code and stderr click gives
    (never a traceback), whichever path runs. A closed fd 1 (`>&-`) is /dev/null (cli/main.py):
    exit 0, nothing on stderr (before, the next file opened, gRPC's epoll, became fd 1)."""
    d = str(node.data.root)

    def run(argv: list[str], off: str) -> tuple[int, str]:
        env = {**os.environ, fastpath.OFF: off}
        if where == "closed fd":
            p = subprocess.run(["bash", "-c", 'exec "$@" >&-', "-", sys.executable, "-m", "etcdward", *argv],
                               stderr=subprocess.PIPE, text=True, env=env, timeout=60)
            assert (p.returncode, p.stderr) == (0, ""), (argv, p)
        elif where == "closed pipe":
            r, w = os.pipe()
            os.close(r)
            with os.fdopen(w, "wb") as out:
                p = subprocess.run([sys.executable, "-m", "etcdward", *argv], stdout=out, stderr=subprocess.PIPE,
                                   text=True, env=env, timeout=60)
        else:
            with open("/dev/full", "wb") as out:
                p = subprocess.run([sys.executable, "-m", "etcdward", *argv], stdout=out, stderr=subprocess.PIPE,
                                   text=True, env=env, timeout=60)
        return p.returncode, p.stderr

    for argv in (["--help"], ["etcd", "member-list", "--data-dir", d], ["get", "em", "--data-dir", d],
                 ["status", "-o", "json", "--data-dir", d], ["get", "em", "-o", "yaml", "--data-dir", d]):
        fast, slow = run(argv, ""), run(argv, "1")
        assert "Traceback" not in fast[1] and fast == slow, (argv, fast, slow)


@needs("etcd")
def test_the_fast_path_runs_and_a_stale_hint_hands_over(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(node.data.root)
    assert fastpath.handled(["etcd", "member-list", "--data-dir", d])
    assert json.loads(capsys.readouterr().out)["members"] == {"n1": node.peer_url}
    assert fastpath.handled(["get", "em", "--data-dir", d]) and "n1" in capsys.readouterr().out
    hint = node.data.client_hint
    saved = hint.read_text()
    try:
        hint.write_text(json.dumps({**json.loads(saved), "configSha256": "0" * 64}))
        assert not fastpath.handled(["etcd", "member-list", "--data-dir", d])
        assert capsys.readouterr() == ("", "")
        fast, slow = both_ways(["etcd", "member-list", "--data-dir", d])  # click, with the YAML port
        assert fast == slow and fast[0] == 0
    finally:
        hint.write_text(saved)


@needs("etcd")
def test_status_of_a_removed_or_waiting_node_goes_to_click(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(node.data.root)
    for marker in (node.data.tombstone, node.data.no_peer_file):
        marker.write_text("{}")
        try:
            assert not fastpath.handled(["status", "--data-dir", d])
            assert capsys.readouterr() == ("", "")
        finally:
            marker.unlink()
    assert fastpath.handled(["status", "-o", "json", "--data-dir", d])


# What made the fast path slow, each measured in milliseconds (README, "CLI start-up"): none may
# come back on it. pathlib is still needed by status (DataDir), not by the other commands.
SLOW_IMPORTS = ("dataclasses", "inspect", "hashlib", "_strptime", "shutil", "typing", "ssl", "socket", "click",
                "pydantic", "asyncio", "etcdward.store.client")


@needs("etcd")
def test_the_fast_path_imports_nothing_slow(node: Node) -> None:
    d = str(node.data.root)
    code = ("import sys\nfrom etcdward.cli.fastpath import handled\nok = False\ntry:\n"
            "    ok = handled(sys.argv[1:])\nexcept SystemExit:\n    ok = True\nfinally:\n"
            f"    print('LOADED', ok, *(m for m in {(*SLOW_IMPORTS, 'pathlib')!r} if m in sys.modules), file=sys.stderr)")
    for argv, allowed in ((["--help"], ()), (["etcd", "member-list", "--data-dir", d], ()),
                          (["get", "em", "--data-dir", d], ()), (["status", "--data-dir", d], ("pathlib",))):
        p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
        ok, *loaded = p.stderr.rsplit("LOADED ", 1)[1].split()
        assert ok == "True" and set(loaded) <= set(allowed), (argv, p.stderr)


# -- status: the same reads and verdict through the gateway ------------------------------------

VOLATILE = {"raftIndex", "raftAppliedIndex", "lastReportSeconds", "remainingSeconds", "dbSize", "dbSizeInUse"}


def _steady(obj: object) -> object:
    """A status document without the figures that move between two runs a moment apart."""
    if isinstance(obj, dict):
        return {k: "~" if k in VOLATILE else _steady(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_steady(v) for v in obj]
    return obj


def _steady_table(text: str) -> str:
    import re

    return re.sub(r" +", " ", re.sub(r"[\d.]+( (KiB|MiB|B))?", "N", text))


@needs("etcd")
def test_status_prints_the_same_both_ways(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(node.data.root)
    assert fastpath.handled(["status", "--data-dir", d])  # healthy: ours, exit 0
    assert "status:           healthy" in capsys.readouterr().out
    fast, slow = both_ways(["status", "--data-dir", d, "-o", "json"])
    assert (fast[0], fast[2]) == (slow[0], slow[2]) == (0, "")
    assert _steady(json.loads(fast[1])) == _steady(json.loads(slow[1]))
    fast, slow = both_ways(["status", f"--data-dir={d}"])
    assert (fast[0], fast[2]) == (slow[0], slow[2])
    assert _steady_table(fast[1]) == _steady_table(slow[1])
    for argv in (["status", "-o", "yaml", "--data-dir", d], ["status", "--data-dir", d, "extra"],
                 ["status", "--data-dir", d, "-w"]):
        assert not fastpath.handled(argv)  # yaml and --watch: click's; a stray argument: click's usage error


@needs("etcd")
def test_status_unreachable_is_clicks_exit_2(node: Node) -> None:
    """Last in this module: it stops the node."""
    node.stop()
    fast, slow = both_ways(["status", "--data-dir", str(node.data.root)])
    assert fast == slow and fast[0] == 2
