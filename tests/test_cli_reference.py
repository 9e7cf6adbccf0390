"""The README's CLI reference is what the click commands say (so it cannot drift), and every
command, argument and option says something."""

from __future__ import annotations

from pathlib import Path

import click

from etcdward.cli import reference
from etcdward.cli.main import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_block_is_the_generated_one() -> None:
    readme = README.read_text()
    assert readme.index("## Commands") < readme.index("## CLI reference") < readme.index(reference.BEGIN)
    wanted = reference.replace_block(readme, reference.generate())
    assert wanted == readme, f"README.md's CLI reference is out of date: run `{reference.REGENERATE}` to regenerate it"


def test_every_command_option_and_argument_has_help() -> None:
    missing = []
    for path, cmd, _ in reference.commands(cli):
        name = "etcdward " + " ".join(path)
        if not (cmd.help or "").strip():
            missing.append(f"{name}: no help text")
        for p in cmd.params:
            if isinstance(p, click.Argument):
                if p.human_readable_name not in (cmd.help or ""):
                    missing.append(f"{name}: its help does not say what {p.human_readable_name} is")
            elif not getattr(p, "hidden", False) and not (getattr(p, "help", "") or "").strip():
                missing.append(f"{name} {'/'.join(p.opts)}: no help text")
    assert not missing, "\n".join(missing)


def test_aliases_come_once_and_new_commands_need_no_registration() -> None:
    paths = {" ".join(path): aliases for path, _, aliases in reference.commands(cli)}
    assert paths["get etcdmembers"] == ["em", "etcdmember"] and "get em" not in paths
    assert {"up", "controller", "etcd leave", "token create", "backup list"} <= set(paths)  # lazy ones included
