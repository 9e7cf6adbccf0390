"""Validated settings: a k0s-shaped YAML file -> frozen pydantic objects.

Every key is optional; unknown keys and bad values are rejected with an error naming the key
(`spec.storage.etcd.peerPort: ...`). Defaults that depend on the host (peer address) are
resolved by `effective()`, so the effective config written to state/ is fully explicit.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .addresses import canonical_host, host_port, ip_literal, is_member_name
from .backupspec import BackupSpec
from .maintenancespec import MaintenanceSpec
from .pkispec import PkiSpec
from .errors import Permanent

# etcd flags that etcdward owns: overriding them through extraArgs would break the layout
# or the join protocol, so they are refused instead of silently applied.
RESERVED_ETCD_ARGS = frozenset(
    {
        "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
        "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state",
        "initial-cluster-token", "cert-file", "key-file", "trusted-ca-file", "peer-cert-file",
        "peer-key-file", "peer-trusted-ca-file", "client-cert-auth", "peer-client-cert-auth",
        # The quorum guard relies on etcd's own checks: one learner at a time, and strict
        # reconfiguration (the liveness keys it uses can be up to one lease TTL stale).
        "strict-reconfig-check", "max-learners", "experimental-max-learners",
    }
)
# Flags that are not part of the layout but would break a guarantee; the reason is the error.
UNSAFE_ETCD_ARGS: dict[str, str] = {
    "force-new-cluster": "it makes a new one-member cluster out of this member's data, a second cluster by "
                         "another door; recover from quorum loss with etcdward's recovery instead",
    "unsafe-no-fsync": "etcd would acknowledge writes that a crash can lose",
    "discovery": "membership is decided by etcdward's join protocol, not by etcd discovery",
    "discovery-srv": "membership is decided by etcdward's join protocol, not by etcd discovery",
    "discovery-srv-name": "membership is decided by etcdward's join protocol, not by etcd discovery",
    "wal-dir": "the WAL must stay inside the data dir etcdward owns (etcd/member/wal)",
}
# Flags that a config key sets: one place to set each, so that the reconciler's NOSPACE
# recovery and the effective config know the value etcd runs with.
CONFIGURED_ETCD_ARGS: dict[str, str] = {
    "quota-backend-bytes": "spec.storage.etcd.quotaBackendBytes",
    "auto-compaction-mode": "spec.maintenance.autoCompaction",
    "auto-compaction-retention": "spec.maintenance.autoCompaction.retention",
}
MIN_QUOTA = 16 * 2**20
MAX_QUOTA = 8 * 2**30  # etcd's suggested maximum; it warns above it


class ConfigError(Permanent):
    """A config file that cannot be used; the message names the key."""


class _Strict(BaseModel):
    # strict: a YAML boolean is not a number and a number is not a string (`port: true` is
    # not port 1). Floats accept integers; nothing else is coerced.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class ApiSpec(_Strict):
    address: str | None = None
    port: int = Field(9443, ge=1, le=65535)
    external_address: str = Field("", alias="externalAddress")
    sans: tuple[str, ...] = ()

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v in (None, "") else ip_literal(v, "address")

    @field_validator("sans", mode="before")
    @classmethod
    def _sans_list(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v  # YAML has lists, the frozen model tuples

    @field_validator("external_address")
    @classmethod
    def _external(cls, v: str) -> str:
        if not v:
            return v
        host, _, port = v.rpartition(":") if v.count(":") == 1 else (v, "", "")
        host = host or v
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{v!r}: port must be 1-65535")
        if canonical_host(host.strip("[]")) is None:
            raise ValueError(f"{v!r} is neither an IP address nor a DNS name")
        return v

    @model_validator(mode="after")
    def _reachable(self) -> "ApiSpec":
        if self.address and ipaddress.ip_address(self.address).is_unspecified and not self.external_address:
            raise ValueError(f"address {self.address} listens everywhere but would go into join tokens as the join "
                             "API's address; set externalAddress to the address joiners should use")
        return self

    @field_validator("sans")
    @classmethod
    def _sans(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for san in v:
            if canonical_host(san) is None:
                raise ValueError(f"{san!r} is neither an IP address nor a DNS name")
        return v


class EtcdSpec(_Strict):
    peer_address: str | None = Field(None, alias="peerAddress")
    peer_port: int = Field(2380, alias="peerPort", ge=1, le=65535)
    client_port: int = Field(2379, alias="clientPort", ge=1, le=65535)
    extra_args: dict[str, str] = Field(default_factory=dict, alias="extraArgs")
    # Path of the etcd binary; empty: $ETCDWARD_ETCD_BIN, then PATH.
    binary: str = ""
    # etcd's --quota-backend-bytes; 0: etcd's default (2 GiB)
    quota_backend_bytes: int = Field(0, alias="quotaBackendBytes")

    @field_validator("quota_backend_bytes")
    @classmethod
    def _quota(cls, v: int) -> int:
        if v != 0 and not MIN_QUOTA <= v <= MAX_QUOTA:
            raise ValueError(f"{v} is not 0 (etcd's default, 2 GiB) or between {MIN_QUOTA} (16 MiB) and {MAX_QUOTA} "
                             "(8 GiB, etcd's suggested maximum)")
        return v

    @property
    def quota_bytes(self) -> int:
        """The quota etcd runs with."""
        return self.quota_backend_bytes or 2 * 2**30

    @field_validator("peer_address")
    @classmethod
    def _peer(cls, v: str | None) -> str | None:
        # etcd listen URLs must be IP literals.
        return None if v in (None, "") else peer_ip(v, "peerAddress")

    @field_validator("extra_args", mode="before")
    @classmethod
    def _extra(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError("must be a mapping of etcd flag names to values")
        out = {}
        for k, val in v.items():
            name = str(k).lstrip("-")
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
                raise ValueError(f"{k!r} is not an etcd flag name")
            if name in RESERVED_ETCD_ARGS:
                raise ValueError(f"{name!r} is managed by etcdward and cannot be overridden")
            if name in UNSAFE_ETCD_ARGS:
                raise ValueError(f"{name!r} is refused: {UNSAFE_ETCD_ARGS[name]}")
            if name in CONFIGURED_ETCD_ARGS:
                raise ValueError(f"{name!r} is set by {CONFIGURED_ETCD_ARGS[name]}; set it there")
            if isinstance(val, bool):
                val = "true" if val else "false"
            if not isinstance(val, (str, int, float)):
                raise ValueError(f"value of {k!r} must be a scalar")
            if any(ord(c) < 32 or ord(c) == 127 for c in str(val)):
                raise ValueError(f"value of {k!r} contains a newline or another control character")
            out[name] = str(val)
        if "name" in out and not is_member_name(out["name"]):
            raise ValueError(f"name {out['name']!r} is not a valid RFC 1123 name")
        return out

    @property
    def name(self) -> str | None:
        return self.extra_args.get("name")


class StorageSpec(_Strict):
    etcd: EtcdSpec = EtcdSpec()


class ReconcilerSpec(_Strict):
    # A learner that has not started this many seconds after it was added is removed, so a
    # joiner that died for good cannot block later joins (etcd allows one learner at a time).
    learner_start_timeout: float = Field(300.0, alias="learnerStartTimeout", ge=1, le=86400, allow_inf_nan=False)
    # A learner that has not started and whose joiner has not repeated its join request for
    # this many seconds is removed: a live joiner repeats it every few seconds until its etcd
    # is ready, so silence means the joiner is gone (or the request was bogus) and the next
    # join need not wait for learnerStartTimeout. Strict: a bool or a string is a mistake.
    joiner_timeout: float = Field(60.0, alias="joinerTimeout", ge=1, le=86400, allow_inf_nan=False)
    # TTL of the reconciler leader lease: another controller takes over within about this long.
    lease_ttl: int = Field(10, alias="leaseTTL", ge=2, le=300)


class Spec(_Strict):
    api: ApiSpec = ApiSpec()
    storage: StorageSpec = StorageSpec()
    reconciler: ReconcilerSpec = ReconcilerSpec()
    backup: BackupSpec = BackupSpec()
    pki: PkiSpec = PkiSpec()
    maintenance: MaintenanceSpec = MaintenanceSpec()


class Config(_Strict):
    api_version: str | None = Field(None, alias="apiVersion")
    kind: str | None = None
    metadata: dict[str, Any] | None = None
    spec: Spec = Spec()

    @property
    def etcd(self) -> EtcdSpec:
        return self.spec.storage.etcd

    @property
    def api(self) -> ApiSpec:
        return self.spec.api

    @property
    def peer_address(self) -> str:
        assert self.etcd.peer_address, "call effective() first"
        return self.etcd.peer_address

    @property
    def api_address(self) -> str:
        return self.api.address or self.peer_address

    @property
    def peer_url(self) -> str:
        return f"https://{host_port(self.peer_address, self.etcd.peer_port)}"

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.etcd.client_port}"

    @property
    def api_url(self) -> str:
        """The join API URL that goes into tokens."""
        ext = self.api.external_address
        if ext:
            has_port = ext.count(":") == 1 or (ext.startswith("[") and "]:" in ext)
            return f"https://{ext}" if has_port else f"https://{host_port(ext, self.api.port)}"
        return f"https://{host_port(self.api_address, self.api.port)}"

    def effective(self) -> Config:
        """Fill host-dependent defaults so that the result is fully explicit; ConfigError when
        two listeners would share an address and port (known only once the defaults are in)."""
        eff = self
        if not self.etcd.peer_address:
            etcd = self.etcd.model_copy(update={"peer_address": first_public_ipv4()})
            storage = self.spec.storage.model_copy(update={"etcd": etcd})
            eff = self.model_copy(update={"spec": self.spec.model_copy(update={"storage": storage})})
        conflict = listener_conflict(eff)
        if conflict:
            raise ConfigError(conflict)
        return eff

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(by_alias=True, exclude_none=True), sort_keys=False)


def peer_ip(value: str, key: str) -> str:
    """A peer address: an IP literal that peers can reach (it is advertised as the peer URL)."""
    ip = ip_literal(value, key)
    if ipaddress.ip_address(ip).is_unspecified or ipaddress.ip_address(ip).is_multicast:
        raise ValueError(f"{value!r} is not an address peers can reach: it is advertised to them as this member's "
                         "peer URL; give this host's own IP address")
    return ip


def _overlap(a: str, b: str) -> bool:
    return a == b or ipaddress.ip_address(a).is_unspecified or ipaddress.ip_address(b).is_unspecified


def listener_conflict(cfg: Config) -> str | None:
    """Why two of the join API, etcd's peer and etcd's client listener would take the same
    address:port (etcd's client URL is always on 127.0.0.1), or None."""
    listeners = [("spec.api.port", cfg.api_address, cfg.api.port),
                 ("spec.storage.etcd.peerPort", cfg.peer_address, cfg.etcd.peer_port),
                 ("spec.storage.etcd.clientPort", "127.0.0.1", cfg.etcd.client_port)]
    for i, (key, host, port) in enumerate(listeners):
        for other, other_host, other_port in listeners[i + 1:]:
            if port == other_port and _overlap(host, other_host):
                return (f"{key}: {host_port(host, port)} is also {other} ({host_port(other_host, other_port)}); "
                        "every listener needs an address:port of its own")
    return None


def first_public_ipv4() -> str:
    """First non-loopback IPv4 address of the host (k0s: iface.FirstPublicAddress)."""
    try:
        import fcntl  # noqa: F401  (Linux only; fall back below)
        addrs = _linux_ipv4_addresses()
    except Exception:  # pragma: no cover - non-Linux
        addrs = []
    for a in addrs:
        if not ipaddress.ip_address(a).is_loopback:
            return a
    return "127.0.0.1"


def _linux_ipv4_addresses() -> list[str]:
    import fcntl
    import struct

    out = []
    for _, ifname in socket.if_nameindex():
        if ifname.startswith(("veth", "cali", "kube-bridge", "vxlan.calico", "dummyvip")):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", ifname[:15].encode()))
            except OSError:
                continue
        out.append(socket.inet_ntoa(packed[20:24]))
    return out


def _yaml_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if isinstance(value, list) else "a string" if isinstance(value, str) else type(value).__name__


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "model_type":  # pydantic's text names our Python class ("instance of PkiSpec")
            msg = f"should be a mapping of keys, not {_yaml_kind(e['input'])}"
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last one
    silently, so a second `port:` would win without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key if isinstance(key, (str, int, float, bool)) else id(key))
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's message in one line: what and where."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        what = " ".join(x for x in (e.context, e.problem) if x)
        return f"{what} (line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1})"
    return " ".join(str(e).split())


def parse(text: str, source: str = "config") -> Config:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a 'spec' key")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_format_error(e)}") from None
    conflict = listener_conflict(cfg) if cfg.etcd.peer_address else None
    if conflict:
        raise ConfigError(f"{source}: {conflict}")
    return cfg


def load(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (invalid byte at offset {e.start})") from None
    return parse(text, str(p))


def load_effective(path: str | Path | None) -> Config:
    """load() + effective(), every error naming the file."""
    cfg = load(path)
    try:
        return cfg.effective()
    except ConfigError as e:
        raise ConfigError(f"{path or 'default config'}: {e}") from None
