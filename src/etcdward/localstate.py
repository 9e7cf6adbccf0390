"""Every file under state/ and the move-aside of etcd data: this node's local memory.

    state/identity.json   pinned member name, cluster ID and member ID (Identity)
    state/join.json       an unfinished join: where it went, what was answered or refused
    state/removed.json    tombstone: this node was removed from its cluster
    state/no-peer.json    while it waits on its old data and no other member answers (fence.py)
    state/etcd.pid        pid of the etcd the supervisor runs
    state/etcd-version.json  the etcd version this member last ran, and its cluster's version
    etcd.aside-<t>-<r>    an etcd data dir moved out of the way (partial, or of a removed member)

`inspect_disk` reads them for the start decision. The member name is pinned at the first
bootstrap/join and reused on later starts even when the hostname changes (k0s #5369); only an
explicit extraArgs.name renames the node. (The data dir's lock is datalock.py: it is not state
but who may touch the state.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from pathlib import Path

from .errors import Permanent
from .frozen import frozen, replace
from .paths import DataDir, atomic_write

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any

    from .decision import Disk


class StateFileError(Permanent):
    """A file under state/ that cannot be read or parsed; the message names it."""


@frozen
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
    import socket  # here: `etcdward status` (the CLI's fast path) never asks, and socket costs it ~3 ms

    return socket.gethostname()


def load_identity(data: DataDir) -> Identity | None:
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


def save_identity(data: DataDir, ident: Identity) -> None:
    body = {"name": ident.name, "clusterID": ident.cluster_id, "memberID": ident.member_id}
    atomic_write(data.identity_file, json.dumps(body, indent=2) + "\n", 0o644)


def resolve_name(pinned: Identity | None, explicit: str | None) -> str:
    if explicit:
        return explicit
    if pinned:
        return pinned.name
    return normalise_name(hostname())


# -- join.json ---------------------------------------------------------------------------------
def read_join_pin(data: DataDir) -> dict[str, Any] | None:
    """What state/join.json says about an unfinished join (an unreadable one still counts)."""
    if not data.join_file.exists():
        return None
    try:
        pin = json.loads(data.join_file.read_text())
    except (OSError, ValueError):
        return {}
    return pin if isinstance(pin, dict) else {}


def pin_join(data: DataDir, fields: dict[str, Any]) -> None:
    """Merge fields into state/join.json (values already there and not given stay)."""
    current = read_join_pin(data) or {}
    current.update({k: v for k, v in fields.items() if v is not None})
    atomic_write(data.join_file, json.dumps(current, indent=2) + "\n")


def clear_join_pin(data: DataDir) -> None:
    try:
        data.join_file.unlink()
    except FileNotFoundError:
        pass


# -- etcd.pid ----------------------------------------------------------------------------------
def write_etcd_pid(data: DataDir, pid: int) -> None:
    atomic_write(data.etcd_pid_file, f"{pid}\n")


def read_etcd_pid(data: DataDir) -> int | None:
    try:
        return int(data.etcd_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def clear_etcd_pid(data: DataDir) -> None:
    try:
        data.etcd_pid_file.unlink()
    except FileNotFoundError:
        pass


# -- etcd-version.json --------------------------------------------------------------------------
def read_etcd_versions(data: DataDir) -> tuple[str | None, str | None]:
    """(etcd version this member last ran, cluster version then), pinned after each successful
    start; (None, None) when not pinned yet."""
    try:
        raw = json.loads(data.etcd_version_file.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except (OSError, ValueError) as e:
        raise StateFileError(f"cannot read {data.etcd_version_file}: {e}; fix or restore it (it pins the etcd "
                             "version this member last ran), or delete it to skip the version check once") from None
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), (str, type(None))) for k in ("etcd", "cluster")):
        raise StateFileError(f"{data.etcd_version_file} is not an etcd version pin (an object with string fields "
                             "etcd, cluster); fix or restore it, or delete it to skip the version check once")
    return raw.get("etcd"), raw.get("cluster")


def pin_etcd_versions(data: DataDir, etcd: str, cluster: str | None) -> None:
    """Pin what this member runs now; a cluster version not known now keeps the pinned one."""
    if cluster is None:
        cluster = read_etcd_versions(data)[1]
    body = {"etcd": etcd, "cluster": cluster}
    atomic_write(data.etcd_version_file, json.dumps(body, indent=2) + "\n")


# -- move aside, tombstone ---------------------------------------------------------------------
def move_aside(path: Path) -> Path:
    import secrets  # here, as logging below and decision.py: `etcdward status` reads identity.json only

    dest = path.with_name(f"{path.name}.aside-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}")
    os.replace(path, dest)
    return dest


def write_tombstone(data: DataDir, ident: Identity | None, why: str) -> None:
    """This member was removed: move its etcd data aside and leave a tombstone, so that it
    neither rejoins nor bootstraps until `etcdward reset`."""
    dest = move_aside(data.etcd) if data.etcd.exists() else None
    body = {
        "removedAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "reason": why,
        "member": ident.name if ident else None,
        "memberID": ident.member_id if ident else None,
        "clusterID": ident.cluster_id if ident else None,
        "etcdDataMovedTo": str(dest) if dest else None,
    }
    atomic_write(data.tombstone, json.dumps(body, indent=2) + "\n")
    import logging

    logging.getLogger(__name__).warning(
        "this member was removed from the etcd cluster (%s); its etcd data dir was moved to %s. "
        "To rejoin: `etcdward reset --data-dir %s`, then start the controller with a new join token.",
        why, dest, data.root)


def read_tombstone(data: DataDir) -> dict[str, Any] | None:
    """The tombstone's content; one that is not a JSON object is still a tombstone."""
    if not data.tombstone.exists():
        return None
    try:
        body = json.loads(data.tombstone.read_text(errors="replace"))
    except (OSError, ValueError):
        body = None
    return body if isinstance(body, dict) else {"reason": f"(unreadable tombstone {data.tombstone})"}


def write_no_peer(data: DataDir, reason: str, since: float) -> None:
    body = {"since": since, "checked": time.time(), "reason": reason}
    atomic_write(data.no_peer_file, json.dumps(body, indent=2) + "\n")


def read_no_peer(data: DataDir) -> dict[str, Any] | None:
    try:
        body = json.loads(data.no_peer_file.read_text(errors="replace"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and isinstance(body.get("reason"), str) else None


def clear_no_peer(data: DataDir) -> None:
    data.no_peer_file.unlink(missing_ok=True)


# -- the start decision's view of the disk ---------------------------------------------------
def inspect_disk(data: DataDir) -> Disk:
    from .decision import Disk

    has_db = data.etcd_db.is_file()
    partial = data.etcd.is_dir() and any(data.etcd.iterdir()) and not has_db
    ident = load_identity(data)  # a broken identity file stops the start: it may pin a cluster
    pin = None if has_db else read_join_pin(data)
    # A learner exists only if a join request was answered (memberID); a refusal added none.
    refused = pin.get("refused") if pin and not pin.get("memberID") else None
    return Disk(has_db=has_db, has_partial_etcd=partial, pinned_cluster_id=ident.cluster_id if ident else None,
                tombstone=data.tombstone.exists(),
                join_started=None if pin is None else str(pin.get("server") or "an unknown join API"),
                join_refused=str(refused) if refused else None)
