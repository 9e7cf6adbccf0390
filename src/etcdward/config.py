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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DNS_NAME_RE = re.compile(rf"^{DNS_LABEL}(\.{DNS_LABEL})*$", re.IGNORECASE)

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


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key."""


def is_dns_name(value: str) -> bool:
    return len(value) <= 253 and bool(DNS_NAME_RE.match(value))


def _ip(value: str, key: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address ({key} must be an IPv4 or IPv6 literal)") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ApiSpec(_Strict):
    address: str | None = None
    port: int = Field(9443, ge=1, le=65535)
    external_address: str = Field("", alias="externalAddress")
    sans: tuple[str, ...] = ()

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v in (None, "") else _ip(v, "address")

    @field_validator("external_address")
    @classmethod
    def _external(cls, v: str) -> str:
        if not v:
            return v
        host, _, port = v.rpartition(":") if v.count(":") == 1 else (v, "", "")
        host = host or v
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{v!r}: port must be 1-65535")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if not is_dns_name(host):
                raise ValueError(f"{v!r} is neither an IP address nor a DNS name") from None
        return v

    @field_validator("sans")
    @classmethod
    def _sans(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for san in v:
            try:
                ipaddress.ip_address(san)
            except ValueError:
                if not is_dns_name(san):
                    raise ValueError(f"{san!r} is neither an IP address nor a DNS name") from None
        return v


class EtcdSpec(_Strict):
    peer_address: str | None = Field(None, alias="peerAddress")
    peer_port: int = Field(2380, alias="peerPort", ge=1, le=65535)
    client_port: int = Field(2379, alias="clientPort", ge=1, le=65535)
    extra_args: dict[str, str] = Field(default_factory=dict, alias="extraArgs")
    # Path of the etcd binary; empty: $ETCDWARD_ETCD_BIN, then PATH.
    binary: str = ""

    @field_validator("peer_address")
    @classmethod
    def _peer(cls, v: str | None) -> str | None:
        # etcd listen URLs must be IP literals.
        return None if v in (None, "") else _ip(v, "peerAddress")

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
            if isinstance(val, bool):
                val = "true" if val else "false"
            if not isinstance(val, (str, int, float)):
                raise ValueError(f"value of {k!r} must be a scalar")
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
    learner_start_timeout: float = Field(300.0, alias="learnerStartTimeout", gt=0, le=86400)
    # A learner that has not started and whose joiner has not repeated its join request for
    # this many seconds is removed: a live joiner repeats it every few seconds until its etcd
    # is ready, so silence means the joiner is gone (or the request was bogus) and the next
    # join need not wait for learnerStartTimeout. Strict: a bool or a string is a mistake.
    joiner_timeout: float = Field(60.0, alias="joinerTimeout", gt=0, le=86400, allow_inf_nan=False, strict=True)
    # TTL of the reconciler leader lease: another controller takes over within about this long.
    lease_ttl: int = Field(10, alias="leaseTTL", ge=2, le=300)


class Spec(_Strict):
    api: ApiSpec = ApiSpec()
    storage: StorageSpec = StorageSpec()
    reconciler: ReconcilerSpec = ReconcilerSpec()


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
        """Fill host-dependent defaults so that the result is fully explicit."""
        if self.etcd.peer_address:
            return self
        etcd = self.etcd.model_copy(update={"peer_address": first_public_ipv4()})
        storage = self.spec.storage.model_copy(update={"etcd": etcd})
        return self.model_copy(update={"spec": self.spec.model_copy(update={"storage": storage})})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(by_alias=True, exclude_none=True), sort_keys=False)


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def is_member_name(name: str) -> bool:
    """A lowercase RFC 1123 subdomain, as Kubernetes object names are."""
    return len(name) <= 253 and name == name.lower() and bool(DNS_NAME_RE.match(name))


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


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc}: {msg}")
    return "; ".join(lines)


def parse(text: str, source: str = "config") -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with a 'spec' key")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_format_error(e)}") from None


def load(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    return parse(text, str(p))
