"""Start-up cost of the CLI: `etcdward --help` lists every command without importing them, and
read-only commands do not load gRPC or pydantic's models before they need them."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from etcdward.cli.main import LAZY_COMMANDS, LAZY_HELP, cli

HEAVY = ("etcdward.store.client", "pydantic", "etcdward.config", "httpx", "rich", "cryptography", "prometheus_client")


def test_lazy_help_is_each_commands_own_first_line() -> None:
    import click

    ctx = click.Context(cli)
    assert set(LAZY_HELP) == set(LAZY_COMMANDS), "every lazy command needs its line in LAZY_HELP"
    for name, text in LAZY_HELP.items():
        assert name in LAZY_COMMANDS, name
        cmd = cli.get_command(ctx, name)
        assert cmd is not None
        assert click.Command(name, help=text).get_short_help_str(500) == cmd.get_short_help_str(500), name


def _imported_after(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom etcdward.cli.main import cli\n"
            f"try:\n    cli({argv!r}, prog_name='etcdward')\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', *(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return set(out.stdout.rsplit("LOADED", 1)[1].split())


def test_help_imports_nothing_heavy() -> None:
    assert _imported_after(["--help"]) == set()


def test_member_list_imports_no_store_client(tmp_path: object) -> None:
    # no data dir: it fails with its one line, after importing what the command needs
    loaded = _imported_after(["etcd", "member-list", "--data-dir", "/nonexistent-etcdward"])
    assert not loaded & {"etcdward.store.client", "httpx", "rich", "cryptography"}


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    for name in LAZY_COMMANDS:
        assert f"  {name} " in out


def test_gateway_response_plain_and_chunked() -> None:
    import io

    from etcdward.store.gateway import _read_response

    plain = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": true}'
    assert _read_response(io.BytesIO(plain)) == (200, b'{"a": true}')
    chunked = (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
               b'4\r\n{"er\r\n8;x=1\r\nror": 1}\r\n0\r\n\r\n')
    assert _read_response(io.BytesIO(chunked)) == (503, b'{"error": 1}')
    # kept alive: two responses on one connection, each read to its end and no further
    two = io.BytesIO(plain + chunked)
    assert [_read_response(two), _read_response(two)] == [(200, b'{"a": true}'), (503, b'{"error": 1}')]


def test_a_controller_starts_without_the_cyclic_collector_and_turns_it_on_once() -> None:
    """cli/main.py leaves the collector off for `controller` (its start-up allocates ~100k objects
    that live for good); startcost.collector_on (5 s after the voter services start, 120 s at the
    latest) turns it on once, after collecting and freezing what start-up left. Other commands
    keep it on."""
    code = ("import gc, sys\nfrom etcdward.cli import main\nsys.argv = ['etcdward', ARG, '--help']\n"
            "try:\n    main.main()\nexcept SystemExit:\n    pass\nprint(gc.isenabled())\n"
            "from etcdward.startcost import collector_on\ncollector_on()\nprint(gc.isenabled(), gc.get_freeze_count() > 0)\n")
    for arg, before in (("controller", "False"), ("status", "True")):
        out = subprocess.run([sys.executable, "-c", code.replace("ARG", repr(arg))], capture_output=True, text=True,
                             check=True).stdout.split("\n")
        want_freeze = "True" if before == "False" else "False"
        assert out[-3:] == [before, f"True {want_freeze}", ""], (arg, out[-3:])
