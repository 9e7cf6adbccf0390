"""The README's CLI reference, generated from the click commands so it cannot drift.

    python -m etcdward.cli.reference            rewrite the block in README.md
    python -m etcdward.cli.reference --check    exit 1 when README.md's block is not what this
                                                generates (tests/test_cli_reference.py runs it)

It walks the whole command tree (lazy commands included, so a new command shows up without
touching this file) and writes, per command: its usage, its help text, and a table of its
arguments and options with type, default and help. The block sits between the markers below.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

BEGIN = "<!-- cli-reference:begin -->"
END = "<!-- cli-reference:end -->"
README = Path(__file__).resolve().parents[3] / "README.md"
REGENERATE = "python -m etcdward.cli.reference"
UNSET = getattr(click.core, "UNSET", None)  # click >= 8.3 marks "no default" with a sentinel


def commands(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command,
                                                                                list[str]]]:
    """(path, command, aliases) for every visible command under group, depth first, sorted by
    name. Names that lead to the same command (`get em|etcdmember|etcdmembers` are one function
    registered three times) come once, under the longest name, with the others as aliases."""
    ctx = click.Context(group, info_name=" ".join(path) or "etcdward")
    if not isinstance(group, click.Group):
        return
    same: dict[object, list[tuple[str, click.Command]]] = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is not None and not cmd.hidden:
            fn = cmd.callback
            key = (fn.__module__, fn.__qualname__, cmd.help) if fn is not None else id(cmd)
            same.setdefault(key, []).append((name, cmd))
    for named in sorted(same.values(), key=lambda named: max(n for n, _ in named)):
        own, cmd = max(named, key=lambda nc: (len(nc[0]), nc[0]))
        yield (*path, own), cmd, sorted(n for n, _ in named if n != own)
        yield from commands(cmd, (*path, own))


def type_of(p: click.Parameter) -> str:
    if isinstance(p, click.Option) and p.is_flag:
        return "flag"
    t = p.type
    if isinstance(t, click.Choice):
        return " \\| ".join(f"`{c}`" for c in t.choices)
    if isinstance(t, click.IntRange):
        return f"integer {t.min}–{t.max}" if t.min is not None and t.max is not None else "integer"
    if isinstance(t, click.Path):
        return "directory" if not t.file_okay else "file" if not t.dir_okay else "path"
    if isinstance(t, click.File):
        return "file (`-` for stdin/stdout)"
    return {"text": "text", "integer": "integer", "float": "number", "boolean": "boolean"}.get(t.name, t.name)


def default_of(p: click.Parameter) -> str:
    if p.required:
        return "required"
    d = p.default
    flag = isinstance(p, click.Option) and p.is_flag
    if flag or callable(d) or d is None or d is UNSET or (p.multiple and not d):
        return ""  # a flag is off unless given; a computed default is described in the help
    return f"`{d}`"


def names_of(p: click.Parameter) -> str:
    if isinstance(p, click.Argument):
        return f"`{p.human_readable_name}`"
    names = [*p.opts, *p.secondary_opts]
    return ", ".join(f"`{n}`" for n in names)


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def section(path: tuple[str, ...], cmd: click.Command, aliases: list[str]) -> str:
    ctx = click.Context(cmd, info_name="etcdward " + " ".join(path))
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    lines = [f"### `etcdward {' '.join(path)}`", "", f"Usage: `etcdward {' '.join(path)} {usage}`".rstrip(), ""]
    if aliases:
        lines += ["Also: " + ", ".join(f"`etcdward {' '.join((*path[:-1], a))}`" for a in aliases), ""]
    text = "\n\n".join(" ".join(par.split()) for par in (cmd.help or "").split("\n\n") if par.strip())
    if text:
        lines += [text.replace("\b\n", "").replace("\b ", ""), ""]
    params = [p for p in cmd.get_params(ctx) if not getattr(p, "hidden", False) and "--help" not in p.opts]
    if params:
        lines += ["| argument / option | type | default | description |", "|---|---|---|---|"]
        for p in params:
            about = "see the description above" if isinstance(p, click.Argument) else cell(getattr(p, "help", "") or "")
            lines.append(f"| {names_of(p)} | {type_of(p)} | {default_of(p)} | {about} |")
        lines.append("")
    return "\n".join(lines)


def generate() -> str:
    from .main import cli

    body = [section(path, cmd, aliases) for path, cmd, aliases in commands(cli)]
    return "\n".join([BEGIN, "", f"Generated from the commands' own help by `{REGENERATE}` (do not edit by hand). "
                      "Every command also takes `-h`/`--help`; `etcdward --version` prints the version.", "",
                      *body, END])


def replace_block(readme: str, block: str) -> str:
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{README}: no {BEGIN} … {END} block")
    return readme[:start] + block + readme[end + len(END):]


def main(argv: list[str]) -> int:
    readme = README.read_text()
    wanted = replace_block(readme, generate())
    if "--check" in argv:
        if wanted != readme:
            print(f"README.md's CLI reference is out of date: run `{REGENERATE}` to regenerate it", file=sys.stderr)
            return 1
        return 0
    if wanted != readme:
        README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
