"""This node's pinned identity in state/identity.json: member name and cluster ID.

The member name is pinned at the first bootstrap/join and reused on later starts even when
the hostname changes (k0s #5369); only an explicit extraArgs.name renames the node.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, replace

from .errors import Permanent
from .paths import DataDir, atomic_write


class StateFileError(Permanent):
    """A file under state/ that cannot be read or parsed; the message names it."""


@dataclass(frozen=True)
class Identity:
    name: str
    cluster_id: str | None = None  # lowercase hex, pinned after the first successful start
    member_id: str | None = None

    def with_(self, **kw: str | None) -> "Identity":
        return replace(self, **kw)


def normalise_name(hostname: str) -> str:
    """Lowercased short hostname as a valid RFC 1123 label."""
    short = hostname.strip().split(".")[0].lower()
    short = re.sub(r"[^a-z0-9-]", "-", short).strip("-")[:63].strip("-")
    return short or "etcdward"


def hostname() -> str:
    return socket.gethostname()


def load(data: DataDir) -> Identity | None:
    try:
        raw = json.loads(data.identity_file.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as e:
        raise StateFileError(f"cannot read {data.identity_file}: {e}; fix or restore it (it pins this node's name "
                             "and cluster), or run `etcdward reset` to start over") from None
    fields = ("name", "clusterID", "memberID")
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not all(
            isinstance(raw.get(k), (str, type(None))) for k in fields):
        raise StateFileError(f"{data.identity_file} is not an identity file (an object with string fields "
                             f"{', '.join(fields)}); fix or restore it, or run `etcdward reset` to start over")
    return Identity(name=raw["name"], cluster_id=raw.get("clusterID"), member_id=raw.get("memberID"))


def save(data: DataDir, ident: Identity) -> None:
    body = {"name": ident.name, "clusterID": ident.cluster_id, "memberID": ident.member_id}
    atomic_write(data.identity_file, json.dumps(body, indent=2) + "\n", 0o644)


def resolve_name(pinned: Identity | None, explicit: str | None) -> str:
    if explicit:
        return explicit
    if pinned:
        return pinned.name
    return normalise_name(hostname())

