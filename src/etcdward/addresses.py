"""Hosts, names and host:port: the one place that says what an IP-or-DNS value is.

Used by the config schema, the join API's request validation, `etcd leave --peer-address`,
the PKI's SAN list and the record names, so that all of them accept and canonicalise the same
values (an IP literal in its canonical form, a DNS name lowercased).
"""

from __future__ import annotations

import re

DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DNS_NAME = rf"^{DNS_LABEL}(\.{DNS_LABEL})*$"  # matched ignoring case
# IGNORECASE's Unicode case folding makes this pattern take ~2 ms to compile, in every CLI
# command that reads a record. On ASCII text (every real name) it matches exactly what the
# pattern with both cases spelled out matches; only other text needs the folding pattern.
_ASCII_DNS_NAME_RE = re.compile(DNS_NAME.replace("a-z", "a-zA-Z"))
_folding_re: list[re.Pattern[str]] = []


def _is_dns_shaped(value: str) -> bool:
    if value.isascii():
        return _ASCII_DNS_NAME_RE.match(value) is not None
    if not _folding_re:
        _folding_re.append(re.compile(DNS_NAME, re.IGNORECASE))
    return _folding_re[0].match(value) is not None


def is_ip(value: str) -> bool:
    import ipaddress  # inside each user: the read-only CLI commands never need it

    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def is_dns_name(value: str) -> bool:
    return len(value) <= 253 and _is_dns_shaped(value)


def canonical_host(value: str) -> str | None:
    """An IP literal in canonical form or a lowercased DNS name; None if it is neither."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value.lower() if is_dns_name(value) else None


def ip_literal(value: str, key: str) -> str:
    """value as a canonical IP literal, else ValueError naming key."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address ({key} must be an IPv4 or IPv6 literal)") from None


def is_member_name(name: str) -> bool:
    """A lowercase RFC 1123 subdomain, as Kubernetes object names are."""
    return len(name) <= 253 and name == name.lower() and _is_dns_shaped(name)


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
