"""`etcdward restore`: a backup archive -> this data dir, as the one member of a new cluster.

Everything is checked before the data dir is written: nothing runs on it, it has no etcd data
and no state or PKI of another node, the archive reads back whole (format, members, sha256,
etcd's own hash), the local etcd is not older (minor) than the one that took the snapshot, and
the config for this host is valid. The new data dir is assembled in a staging dir next to the
data dir (the snapshot restored by etcd's own tool with a fresh --initial-cluster-token, so a
new cluster ID; the CAs and keys from the archive with leaf certificates made for this host;
state/identity.json pinning the name and the new IDs), then moved in under the data-dir lock:
pki/, state/ and, last, etcd/ (the db is what makes the controller START; with only pki/ and
state/ there, the pinned cluster ID makes it refuse to bootstrap).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from .. import config as cfgmod
from .. import datalock, localstate, pki
from ..config import Config
from ..errors import EtcdwardError, Permanent
from ..localstate import Identity
from ..paths import DataDir, atomic_write
from ..supervisor import etcd_processes, find_etcd
from .archive import PKI_FILES, Manifest, Unpacked, read_archive
from .etcdtool import Restored, Tool, find_tool, newer_minor, restore, version_of

log = logging.getLogger(__name__)


class RestoreRefused(Permanent):
    """The restore cannot be done as asked; nothing was changed."""


# -- the data dir ----------------------------------------------------------------------------
def check_not_running(data: DataDir, command: str) -> None:
    """Refuse while a controller (or anything holding the lock) or an etcd runs on data."""
    holder = datalock.holder(data)
    if holder is not None:
        raise RestoreRefused(f"data dir {data.root} is in use by {holder}: stop the controller first; {command} "
                             "works on a stopped node only")
    pids = etcd_processes(data)
    if pids:
        raise RestoreRefused(f"an etcd is running on {data.root} (pid {', '.join(map(str, pids))}): stop it first")


def check_empty(data: DataDir) -> None:
    """Refuse a data dir that has etcd data, state or PKI: restore never merges into a node."""
    reset = f"`etcdward reset --data-dir {data.root}` first (add --force if it still holds a member's data)"
    if data.etcd_db.exists():
        raise RestoreRefused(f"{data.root} already has an etcd db ({data.etcd_db}); restore only into an empty "
                             f"data dir: {reset}")
    leftovers = [p.name for p in (data.state, data.pki) if p.exists()]
    if data.etcd.is_dir() and any(data.etcd.iterdir()):
        leftovers.insert(0, "etcd/")
    if leftovers:
        raise RestoreRefused(f"{data.root} is not empty (it has {', '.join(leftovers)}); restore only into an empty "
                             f"data dir: {reset}")


# -- the config for this host ----------------------------------------------------------------
def host_config(archived: bytes, own: Config | None, peer_address: str | None) -> Config:
    """The config the restored controller runs with: `own` (-c) if given, else the archived one
    with the archived node's addresses taken out (peer address from --peer-address, else this
    host's first public IPv4, as a controller without one would pick; the join API on it)."""
    if own is not None:
        body: dict[str, Any] = own.model_dump(by_alias=True, exclude_none=True)
        source = "the config given"
    else:
        try:
            old = cfgmod.parse(archived.decode("utf-8", errors="replace"), "the archive's config.yaml")
        except cfgmod.ConfigError as e:
            raise RestoreRefused(str(e)) from None
        body = old.model_dump(by_alias=True, exclude_none=True)
        source = "the archive's config.yaml"
        _forget_addresses(body, old.etcd.peer_address)
    if peer_address:
        body.setdefault("spec", {}).setdefault("storage", {}).setdefault("etcd", {})["peerAddress"] = peer_address
    try:
        return cfgmod.parse(yaml.safe_dump(body, sort_keys=False), source).effective()
    except cfgmod.ConfigError as e:
        raise RestoreRefused(str(e)) from None


def _forget_addresses(body: dict[str, Any], old_peer: str | None) -> None:
    spec = body.get("spec", {})
    spec.get("storage", {}).get("etcd", {}).pop("peerAddress", None)
    api = spec.get("api", {})
    address = api.get("address")
    if address and not ipaddress.ip_address(address).is_unspecified:
        api.pop("address")  # the join API then listens on the new peer address
    external = str(api.get("externalAddress") or "")
    if old_peer and external.rsplit(":", 1)[0].strip("[]") == old_peer:
        api.pop("externalAddress")


# -- restore ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    manifest: Manifest
    config: Config
    ident: Identity
    tool: Tool
    bumped: bool
    etcd_version: str


def restore_archive(src: IO[bytes], data: DataDir, *, own_config: Config | None, peer_address: str | None,
                    config_out: Path | None, locked: Callable[[], AbstractContextManager[None]],
                    what: str = "archive") -> Result:
    """Check everything, assemble the new data dir next to it, move it in under `locked()`."""
    check_not_running(data, "restore")
    check_empty(data)
    if config_out is not None and not config_out.parent.is_dir():
        raise RestoreRefused(f"--config-out: directory {config_out.parent} does not exist")
    data.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=data.root.parent, prefix=f".{data.root.name}.restore-"))
    try:
        try:
            unpacked, cfg, ident, tool, restored, local = _assemble(src, staging, own_config, peer_address, what)
        except EtcdwardError as e:
            raise RestoreRefused(f"{e}; {data.root} was not changed") from None
        with locked():
            check_empty(data)  # again, now that nobody else can change it
            for part in ("pki", "state", "etcd"):  # etcd/ last: the db makes the controller START
                _move_into(staging / "new" / part, data.root / part)
            _sync_dir(data.root)
        if config_out is not None:
            atomic_write(config_out, cfg.to_yaml(), 0o600)
        return Result(unpacked.manifest, cfg, ident, tool, restored.bumped, local)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _assemble(src: IO[bytes], staging: Path, own_config: Config | None, peer_address: str | None, what: str,
              ) -> tuple[Unpacked, Config, Identity, Tool, Restored, str]:
    """Read and check the archive, and build the new data dir in staging/new (no lock needed:
    nothing here touches the data dir)."""
    unpacked = read_archive(src, staging, what=what)
    assert unpacked.snapshot is not None
    cfg = host_config(unpacked.config_yaml, own_config, peer_address)
    binary = find_etcd(cfg.etcd.binary or None)
    local = version_of(binary)
    too_new = newer_minor(unpacked.manifest.etcd_version, local)
    if too_new:
        raise RestoreRefused(too_new)
    tool = find_tool(binary)
    name = localstate.resolve_name(None, cfg.etcd.name)
    new = DataDir(staging / "new")
    _write_pki(new, unpacked.pki, cfg)
    restored = restore(tool, unpacked.snapshot, new.etcd, name, cfg.peer_url, f"etcdward-{secrets.token_hex(8)}")
    ident = Identity(name=name, cluster_id=restored.cluster_id, member_id=restored.member_id)
    localstate.save_identity(new, ident)
    return unpacked, cfg, ident, tool, restored, local


def _write_pki(new: DataDir, archived: dict[str, bytes], cfg: Config) -> None:
    """The archived CAs (keys 0600), then this host's leaf certificates signed by them; a CA
    whose certificate and key do not load or do not match is refused here."""
    for rel in PKI_FILES:
        atomic_write(new.root / rel, archived[rel], 0o600 if rel.endswith(".key") else 0o644)
    for crt, key in ((new.ca_crt, new.ca_key), new.etcd_cert("ca")):
        try:
            pair = pki.load_pair(crt, key)
            if pair.cert.public_key().public_numbers() != pair.key.public_key().public_numbers():  # type: ignore[union-attr]
                raise pki.PKIError("certificate and key do not match")
        except pki.PKIError as e:
            raise RestoreRefused(f"the archive's {crt.relative_to(new.root)} cannot be used: {e}") from None
    pki.ensure_node_pki(new, peer_address=cfg.peer_address, api_address=cfg.api_address, sans=cfg.api.sans,
                        hostname=localstate.hostname(), create_cas=False)


def _move_into(src: Path, dest: Path) -> None:
    """rename(2) src to dest; across filesystems (data dir on its own mount), copy next to dest
    first, then rename there."""
    try:
        os.replace(src, dest)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    incoming = dest.with_name(f".{dest.name}.incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(src, incoming, symlinks=True)
    os.replace(incoming, dest)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)
