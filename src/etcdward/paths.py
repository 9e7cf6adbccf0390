"""The data-dir layout, in one place.

Operators and other tools rely on these exact names (see README, "Data dir layout").

pathlib is imported on first use: the read-only CLI commands of the fast path (cli/fastpath.py)
find what they need to reach the local etcd through ClientFiles, as strings; importing pathlib
(with urllib.parse and ipaddress) would cost them ~4 ms before their first request.
"""

from __future__ import annotations

import json
import os

from .frozen import frozen

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    DEFAULT_DATA_DIR: Path

DEFAULT_ROOT = "/var/lib/etcdward"
# What the read-only CLI commands read first, relative to the data dir (DataDir and ClientFiles)
CLIENT_HINT = "state/client.json"
EFFECTIVE_CONFIG = "state/config.yaml"
ETCD_PKI = "pki/etcd"
TOMBSTONE = "state/removed.json"
NO_PEER = "state/no-peer.json"


def __getattr__(name: str) -> Any:
    if name == "DEFAULT_DATA_DIR":  # a Path, made when asked for: see the module's doc
        from pathlib import Path

        return Path(DEFAULT_ROOT)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@frozen
class DataDir:
    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str] | None) -> DataDir:
        from pathlib import Path

        return cls(Path(path or DEFAULT_ROOT).absolute())

    @property
    def lock_file(self) -> Path:
        # In the root, not under state/: `reset` removes state/ but must not remove the lock.
        return self.root / "etcdward.lock"

    # -- pki -------------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ca_crt(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.pki / "ca.key"

    @property
    def api_crt(self) -> Path:
        return self.pki / "api.crt"

    @property
    def api_key(self) -> Path:
        return self.pki / "api.key"

    @property
    def etcd_pki(self) -> Path:
        return self.root / ETCD_PKI

    def etcd_cert(self, kind: str) -> tuple[Path, Path]:
        """(crt, key) for kind in ca | server | peer | client."""
        return self.etcd_pki / f"{kind}.crt", self.etcd_pki / f"{kind}.key"

    # -- etcd ------------------------------------------------------------------------------
    @property
    def etcd(self) -> Path:
        return self.root / "etcd"

    @property
    def etcd_db(self) -> Path:
        # etcd's own persistent state is the only join marker (k0s #5149).
        return self.etcd / "member" / "snap" / "db"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_log(self) -> Path:
        return self.logs / "etcd.log"

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def identity_file(self) -> Path:
        return self.state / "identity.json"

    @property
    def effective_config(self) -> Path:
        return self.root / EFFECTIVE_CONFIG

    @property
    def client_hint(self) -> Path:
        """The local etcd's client port, derived from effective_config (read_client_port)."""
        return self.root / CLIENT_HINT

    @property
    def tombstone(self) -> Path:
        return self.root / TOMBSTONE

    @property
    def no_peer_file(self) -> Path:
        """Written while this node waits on old data and no other member answers (fence.py)."""
        return self.root / NO_PEER

    @property
    def join_file(self) -> Path:
        """What the join API answered; lets a restart after a crash finish the same join."""
        return self.state / "join.json"

    @property
    def etcd_pid_file(self) -> Path:
        return self.state / "etcd.pid"

    @property
    def etcd_version_file(self) -> Path:
        """The etcd version this member last ran and its cluster's version (etcdversions.py)."""
        return self.state / "etcd-version.json"


class ClientFiles:
    """DataDir's files for a client of the local etcd, as strings: the client hint, the effective
    config it was written for, the etcd CA and client certificate (read_client_hint and
    read_client_port take either), and the markers of a node that is not serving (removed, or
    waiting for a peer)."""

    def __init__(self, root: str | None) -> None:
        root = root or DEFAULT_ROOT
        self.root = root if os.path.isabs(root) else os.path.join(os.getcwd(), root)  # as Path.absolute()
        self.client_hint = os.path.join(self.root, CLIENT_HINT)
        self.effective_config = os.path.join(self.root, EFFECTIVE_CONFIG)
        self.tombstone = os.path.join(self.root, TOMBSTONE)
        self.no_peer_file = os.path.join(self.root, NO_PEER)

    def etcd_cert(self, kind: str) -> tuple[str, str]:
        pki = os.path.join(self.root, ETCD_PKI)
        return os.path.join(pki, f"{kind}.crt"), os.path.join(pki, f"{kind}.key")


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here: the fast CLI path imports this module and never writes

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not e.filename:
            e.filename = str(path)  # a failed write names the file it was for (e.g. disk full)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_client_hint(data: DataDir, effective_config: bytes, client_port: int,
                      backup: dict[str, Any] | None = None) -> None:
    """Next to the effective config: its client port, its backup schedule (what `status` shows:
    interval, dir, keep, beforeMembershipChange) and the config's digest, so that a read-only
    CLI command needs no YAML parser or pydantic (read_client_hint)."""
    atomic_write(data.client_hint, json.dumps({"configSha256": _sha256_hex(effective_config),
                                               "clientPort": client_port, "backup": backup}) + "\n")


def read_client_hint(data: DataDir | ClientFiles) -> dict[str, Any] | None:
    """write_client_hint's object, or None when it is absent, damaged, has no valid port, or was
    not written for the effective config as it is now (edited by hand, or an older controller)."""
    try:
        hint = json.loads(_read(data.client_hint))
        config = _read(data.effective_config)
    except (OSError, ValueError):
        return None
    if not isinstance(hint, dict) or hint.get("configSha256") != _sha256_hex(config):
        return None
    port = hint.get("clientPort")
    return hint if type(port) is int and 0 < port < 65536 else None


def read_client_port(data: DataDir | ClientFiles) -> int | None:
    hint = read_client_hint(data)
    return None if hint is None else int(hint["clientPort"])


def _read(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _sha256_hex(data: bytes) -> str:
    try:
        # hashlib's own built-in SHA-256, the same digest: importing hashlib loads OpenSSL's digest
        # list first (~2-4 ms, as much as the fast CLI path's read); not in every build or version
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    return sha256(data).hexdigest()
