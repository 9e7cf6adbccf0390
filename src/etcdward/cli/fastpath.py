"""The fast path: a few read-only commands run without click, pydantic or asyncio.

An `etcdward etcd member-list` through click spends most of its time importing (click alone
takes longer than the whole of `etcdctl member list`). `handled(argv)` recognises only exact,
well-formed argv of

    etcdward --help | -h
    etcdward etcd member-list [--data-dir DIR] [-o|--output json|table|wide]
    etcdward get etcdmembers|etcdmember|em [NAME] [-o|--output table|wide|json] [--data-dir DIR]
    etcdward status [--data-dir DIR] [-o|--output table|json]
    etcdward backup --save-path DIR [--data-dir DIR]      (DIR not -: handed to the controller)

and runs them with the standard library and etcdward's own light modules, reading through
etcd's JSON gateway (store/gateway.py) with the client port from state/client.json. For
anything else - another option or value, a subcommand's --help, a missing or stale client.json,
any error at all - it returns False before printing anything and click runs the command as
always: click stays the one source of help texts, usage errors, error lines and exit codes.
tests/test_cli_fastpath.py checks that both paths print the same bytes.

ETCDWARD_NO_FASTPATH=1 turns it off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

TYPE_CHECKING = False  # typing costs this module more than it prints
if TYPE_CHECKING:
    from typing import Any

OFF = "ETCDWARD_NO_FASTPATH"
# A healthy local etcd answers in milliseconds. One that hangs (stopped, no quorum) makes the fast
# path give up after this and click take over with its own timeout and error line: an operator
# waits a little longer in that case, never the whole timeout twice.
TRY_TIMEOUT = 1.5

Run = Callable[[], tuple[str, list[str]]]  # -> (stdout, stderr lines), or raises: click takes over


class Exit(Exception):
    """Printed; exit with this code (status: 1 degraded; a failed backup: 1 and its error line)."""

    def __init__(self, out: str, code: int, err: list[str] | None = None) -> None:
        super().__init__(code)
        self.out, self.code, self.err = out, code, err or []


class NotMine(Exception):
    """This argv is not one the fast path prints exactly as click does."""


def handled(argv: list[str]) -> bool:
    """Run argv here if it is one of ours; False (nothing printed) means: run it through click."""
    if os.environ.get(OFF) or sys.stdout is None or sys.stderr is None:  # closed stream: click says what it means
        return False
    code = 0
    try:
        run = recognise(argv)
        try:
            out, err = run()
        except Exit as e:
            out, err, code = e.out, e.err, e.code
    except Exception:  # not ours, or something went wrong: click does it again and says what
        return False
    try:
        for line in err:
            sys.stderr.write(line + "\n")
        sys.stdout.write(out)
        sys.stdout.flush()
    except OSError:
        if argv[:1] == ["backup"]:  # taken already: doing it again would take a second archive
            sys.exit(1)
        # a reader that went away (EPIPE) or a full disk: click, doing the command again, meets the
        # same error and answers it in its words (exit 1, at most one line), never a traceback
        return False
    if code:
        sys.exit(code)
    return True


def recognise(argv: list[str]) -> Run:
    if argv in (["--help"], ["-h"]):
        return top_help
    if argv[:2] == ["etcd", "member-list"]:
        opts, args = parse(argv[2:], {"--data-dir": None, "-o": ("json", "table", "wide")})
        if args:
            raise NotMine
        return lambda: member_list(opts.get("--data-dir"), opts.get("-o", "json"))
    if argv[:1] == ["get"] and argv[1:2] and argv[1] in ("etcdmembers", "etcdmember", "em"):
        opts, args = parse(argv[2:], {"--data-dir": None, "-o": ("table", "wide", "json")})
        if len(args) > 1:
            raise NotMine
        return lambda: get(opts.get("--data-dir"), args[0] if args else None, opts.get("-o", "table"))
    if argv[:1] == ["status"]:
        opts, args = parse(argv[1:], {"--data-dir": None, "-o": ("table", "json")})
        if args:
            raise NotMine
        return lambda: status(opts.get("--data-dir"), opts.get("-o", "table"))
    if argv[:1] == ["backup"]:
        opts, args = parse(argv[1:], {"--data-dir": None, "--save-path": None})
        if args or "--save-path" not in opts:  # `backup list`, or click's error
            raise NotMine
        return lambda: backup(opts.get("--data-dir"), opts["--save-path"])
    raise NotMine


def parse(args: list[str], spec: dict[str, tuple[str, ...] | None]) -> tuple[dict[str, str], list[str]]:
    """click's parsing for options that take one value: `--opt V`, `--opt=V`, `-oV`, `-o V`, the
    last one wins, positionals anywhere. `-o` stands for `--output`; `spec` gives each option's
    choices (None: any value). Values that click might read otherwise (empty, starting with -)
    and every other option are NotMine."""
    long_names = {"--output": "-o"}
    opts: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            name, value = a.split("=", 1)
        elif a in spec or a in long_names:
            if i + 1 == len(args):
                raise NotMine
            name, value = a, args[i + 1]
            i += 1
        elif a.startswith("-") and not a.startswith("--") and len(a) > 2:
            name, value = a[:2], a[2:]
        elif a.startswith("-"):
            raise NotMine
        else:
            positional.append(a)
            i += 1
            continue
        name = long_names.get(name, name)
        if name not in spec or not value or value.startswith("-"):
            raise NotMine
        choices = spec[name]
        if choices is not None and value not in choices:
            raise NotMine
        opts[name] = value
        i += 1
    return opts, positional


def top_help() -> tuple[str, list[str]]:
    from .commandlist import top_help as text

    return text(terminal_columns()) + "\n", []


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns, as click asks for it: importing shutil (bz2, lzma,
    fnmatch) would cost `etcdward --help` ~6 ms."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):  # stdout None, closed, detached or not a terminal
        return 80


def backup(data_dir: str | None, save_path: str) -> tuple[str, list[str]]:
    """The node's controller takes it (backup/handoff.py); none answering: click's path, which
    takes it itself. A failure the controller reports is printed as click prints it."""
    from pathlib import Path

    from ..backup.handoff import BackupFailed, NoController, backup_via_controller
    from ..paths import DataDir

    _not_a_file(data_dir)
    dest = Path(save_path).absolute()
    if dest.exists() and not dest.is_dir():
        raise NotMine  # click's error line
    try:
        made = backup_via_controller(DataDir.at(data_dir).root, dest, save_path)
    except NoController:
        raise NotMine from None
    except BackupFailed as e:
        raise Exit("", 1, [str(e)]) from None
    return f"{made}\n", []


def _not_a_file(data_dir: str | None) -> None:
    if data_dir is not None and os.path.isfile(data_dir):  # click refuses a file for --data-dir
        raise NotMine


def _reader(data_dir: str | None, files=None, port: int | None = None):  # type: ignore[no-untyped-def]
    """A reader of the local etcd, with the data dir's files as strings (paths.ClientFiles: no
    pathlib), the caller's when it has them."""
    from ..paths import ClientFiles, read_client_port
    from ..store.gateway import GatewayReader

    if files is None:
        _not_a_file(data_dir)
        files = ClientFiles(data_dir)
    port = port or read_client_port(files)
    if port is None:
        raise NotMine
    ca, _ = files.etcd_cert("ca")
    crt, key = files.etcd_cert("client")
    return GatewayReader(f"127.0.0.1:{port}", ca, crt, key, timeout=TRY_TIMEOUT)


def member_list(data_dir: str | None, output: str) -> tuple[str, list[str]]:
    with _reader(data_dir) as etcd:
        answer = etcd.send_members()  # answered while the printing is imported
        from .output import member_list_text

        return member_list_text(answer(), output), []


def get(data_dir: str | None, name: str | None, output: str) -> tuple[str, list[str]]:
    from ..addresses import is_member_name
    from ..keys import ETCDMEMBERS

    if name is not None and not is_member_name(name):
        raise NotMine
    with _reader(data_dir) as etcd:
        answer = etcd.send_get_prefix(ETCDMEMBERS)  # answered while the records and the table are imported
        from ..records import listing
        from .output import get_text

        got = get_text(listing(*answer()), name, output)
    if got is None:
        raise NotMine  # not found: click says so, in its words
    return got


def status(data_dir: str | None, output: str) -> tuple[str, list[str]]:
    """`etcdward status` as status_cmd.py prints it, from the same reads through the gateway.
    Only the plain case is done here: a fenced or waiting node, a failed read, a node that is
    not a voter with a leader - click says what then, in its words."""
    from ..keys import ALIVE, BACKUP_STATUS, DEFRAG_LOCK, ETCDMEMBERS, JOINS, MAINTENANCE_LAST, RECONCILER_LEADER
    from ..paths import ClientFiles, read_client_hint

    _not_a_file(data_dir)
    files = ClientFiles(data_dir)  # strings until the requests are out: DataDir imports pathlib
    hint = read_client_hint(files)
    if hint is None or not isinstance(hint.get("backup"), dict) or os.path.exists(files.tombstone) \
            or os.path.exists(files.no_peer_file):
        raise NotMine
    with _reader(None, files, hint["clientPort"]) as etcd:
        # All three requests go out at once (HTTP/1.1 pipelining): etcd answers them while the
        # rest of this command is imported. The keys status_cmd reads one by one
        # (clusterview.gather) are one transaction. Without a leader that read would wait: its
        # answer is then never read, the connection closes and click says what is wrong.
        local_answer, members_answer = etcd.send_status(), etcd.send_members()
        kvs_answer = etcd.send_read_all([
            (ALIVE, True), (JOINS, True), (ETCDMEMBERS, True), (RECONCILER_LEADER, False), (BACKUP_STATUS, False),
            (MAINTENANCE_LAST, False), (DEFRAG_LOCK, False)])
        import time

        from ..paths import DataDir

        data = DataDir.at(data_dir)

        from .. import clusterview as cv
        from ..backup.report import parse_status
        from ..localstate import load_identity
        from ..memberreport import alarms_in
        from ..records import listing
        from .status_output import backup_schedule, exit_code, status_info, status_text

        pinned = load_identity(data)
        local = {"pinnedClusterID": pinned.cluster_id if pinned else None,
                 "clientURL": f"https://127.0.0.1:{hint['clientPort']}", "waiting": None,
                 "backup": backup_schedule(hint["backup"], data.root)}
        local_status = local_answer()
        if local_status.leader_id == 0 or local_status.is_learner:
            raise NotMine
        members = members_answer()
        alive, joins, records, leader, backup_kv, last, lock = kvs_answer()
        # Status lists this member's copy of the cluster's alarms (memberreport.alarms_in); the Alarm
        # RPC, a raft round trip, is asked only when there is one, for the cluster's own word on it
        alarms = [(a.member_id, a.kind) for a in etcd.alarms()] if alarms_in(local_status.errors) else []
    backup = parse_status(backup_kv[0][0].value if backup_kv[0] else None)
    # every read above is linearizable and answered: store.ready's read would pass too
    view = cv.build(local_status, members, alive[0], joins[0], _one(leader), listing(*records), backup, alarms,
                    time.time())
    info = status_info(cv.to_dict(cv.finish(view, _one(last), _one(lock), data)), local)
    raise Exit(status_text(info, output), exit_code(info))


def _one(read: tuple[list[Any], int]) -> Any:
    """The KV of a read_all read of one key, None when there is none."""
    return read[0][0] if read[0] else None
