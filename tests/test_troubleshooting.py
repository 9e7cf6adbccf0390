"""The README's Troubleshooting table is keyed by messages the product really prints.

Convention (the README says it above the table): each `code span` in a row's first column is a
message as printed; `…`, `<placeholder>` and numbers stand for any text. The test checks every message
against the string literals of src/: each piece of text between wildcards must be found in one
literal, or be one literal's end, whole literals and the next literal's start (a message made of
an f-string's parts, or of strings joined at run time, like `data dir … is in use by <holder>`
where the holder prints itself). Placeholders in the code (`{…}` of f-strings and .format,
`%s` of log calls) split literals the same way.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WILDCARD = re.compile(r"…|<[^<>`]+>|\d+")
CODE_PLACEHOLDER = re.compile(r"\{\w*(?:![rsa])?(?::[^{}]*)?\}|%[-#0 +]*\d*(?:\.\d+)?[sdrfgx]")


def troubleshooting_messages(readme: str) -> list[str]:
    section = readme.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| message", "|---")):
            continue
        first = re.split(r"(?<!\\)\|", line)[1]
        out += [m.replace("\\|", "|") for m in re.findall(r"`([^`]+)`", first)]
    return out


@cache
def literal_pieces() -> tuple[str, frozenset[str]]:
    """Every piece of literal text in src/, as one corpus with NUL between pieces (so a search
    can ask for a piece's start or end), and as a set (whole pieces)."""
    pieces: set[str] = set()
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                pieces.update(CODE_PLACEHOLDER.split(node.value))
    pieces.discard("")
    return "\0" + "\0".join(sorted(pieces)) + "\0", frozenset(pieces)


def in_source(text: str) -> bool:
    """text is in one literal, or is a literal's end + whole literals + a literal's start."""
    corpus, whole = literal_pieces()
    if text in corpus:
        return True
    reach = {j for j in range(1, len(text)) if text[:j] + "\0" in corpus}
    todo = sorted(reach)
    while todo:
        i = todo.pop()
        if "\0" + text[i:] in corpus:
            return True
        for k in range(i + 1, len(text)):
            if k not in reach and text[i:k] in whole:
                reach.add(k)
                todo.append(k)
    return False


def missing_parts(message: str) -> list[str]:
    parts = [part.strip() for part in WILDCARD.split(message)]  # spaces next to a wildcard may be its own
    return [part for part in parts if len(part) >= 3 and not in_source(part)]


def test_every_documented_message_is_printed_by_the_code() -> None:
    messages = troubleshooting_messages((ROOT / "README.md").read_text())
    assert len(messages) >= 20, messages  # the table was found and parsed
    drifted = {m: parts for m in messages if (parts := missing_parts(m))}
    assert not drifted, "README Troubleshooting messages not found in src/ (fix the README or the code):\n" + "\n".join(
        f"  {m!r}: {parts}" for m, parts in drifted.items())


def test_the_matcher_follows_messages_across_placeholders_and_nothing_else() -> None:
    assert in_source("is in use by") and in_source("could not tell the join API that learner ")
    assert not in_source("this message was never written by anyone")
    assert missing_parts("data dir <D> is in use by <holder>; stop that process first or use another --data-dir") == []
    assert missing_parts("data dir <D> is in use; reboot the machine") == ["is in use; reboot the machine"]
