"""What the read-only commands print, without click: shared by their click commands and by the
fast path (fastpath.py), so both print the same bytes."""

from __future__ import annotations

import json
from collections.abc import Sequence

TYPE_CHECKING = False  # typing costs the fast path (fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any

    from ..records import Listing
    from ..store import Member


def table_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """kubectl-style plain table (no box, two spaces between columns, every cell padded to its
    column), stable for scripts that use awk. Plain string formatting: importing rich for it
    cost more than the rest of a short command."""
    cells = [list(columns), *(["" if v is None else str(v) for v in r] for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "\n" for r in cells)


def data_text(obj: Any, fmt: str) -> str:
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(obj, sort_keys=False))
    return json.dumps(obj, indent=2) + "\n"


def k0s_member_list(members: list[Member]) -> str:
    """Exactly k0s's one-line format: {"members":{"<name>":"<peerURL>"}} (keys sorted)."""
    return json.dumps({"members": {m.name: m.peer_url for m in members}}, sort_keys=True,
                      separators=(",", ":"))


def member_list_text(members: list[Member], output: str) -> str:
    """`etcdward etcd member-list -o json|table|wide`."""
    if output == "json":
        return k0s_member_list(members) + "\n"
    # table and wide both show what the issue lists; wide adds the decimal ID etcdctl's JSON uses
    cols = ["ID", "NAME", "PEER URLS", "CLIENT URLS", "LEARNER", "STARTED"] + (["ID (DECIMAL)"] if output == "wide" else [])
    rows = []
    for m in sorted(members, key=lambda m: (m.name or "~", m.id)):
        row = [m.hex_id, m.name or "(unstarted)", ",".join(m.peer_urls), ",".join(m.client_urls),
               str(m.is_learner).lower(), str(m.started).lower()]
        rows.append(row + ([str(m.id)] if output == "wide" else []))
    return table_text(cols, rows)


def get_text(listing: Listing, name: str | None, output: str) -> tuple[str, list[str]] | None:
    """`etcdward get etcdmembers [NAME] -o ...`: (stdout, stderr lines); None when NAME is not a record."""
    from ..kubeapi.table import cli_cell, cli_columns

    warnings = [f"warning: {k} is not a valid EtcdMember record ({why}); skipped" for k, why in listing.invalid]
    recs = sorted(listing.records, key=lambda r: r.name)
    header = [c.name for c in cli_columns(output == "wide")]

    def table(chosen: list[Any]) -> str:
        return table_text(header, [[cli_cell(c, r) for c in cli_columns(output == "wide")] for r in chosen])

    if name is not None:
        one = next((r for r in recs if r.name == name), None)
        if one is None:
            return None
        return (data_text(one.to_dict(), output) if output in ("json", "yaml") else table([one])), warnings
    if output in ("json", "yaml"):
        from ..kubeapi.resource import list_object

        return data_text(list_object(tuple(recs)), output), warnings
    if not recs:
        return "", [*warnings, "No resources found"]
    return table(recs), warnings
