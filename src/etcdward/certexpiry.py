"""When this node's certificates expire, read from its pki/ without the cryptography package.

`node_certificates` + `expiry_problems` are what `etcdward status` warns about and /metrics
exports (etcdward_certificate_*): renewal is failing when a leaf is still not renewed
RENEWAL_OVERDUE of its life after its latest renewal point, and any certificate expiring
within EXPIRES_SOON is named (a CA, or a leaf renewal cannot extend) - except a short-lived
leaf, whose whole last third lies within it by design.

Only the validity of a certificate is read: a few lines of DER (`validity`) instead of
importing cryptography, which costs `etcdward status` more than all its reads.
"""

from __future__ import annotations

import binascii
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from .paths import DataDir, node_leaves

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any

RENEW_AT = 2 / 3  # of a leaf's life: leaves a third of it to retry a failed renewal
# Controllers renew a little before RENEW_AT, each certificate at its own moment, so that the
# leaves of nodes started together are not all renewed in the same second.
JITTER = 0.1  # of the life: renewal somewhere in [RENEW_AT - JITTER, RENEW_AT] of it
RENEWAL_OVERDUE = 0.1  # of a leaf's life past its latest renewal point: renewing is failing
EXPIRES_SOON = dt.timedelta(days=7)


def renew_at(not_before: dt.datetime, not_after: dt.datetime, jitter: float) -> dt.datetime:
    """When a controller renews a leaf valid from not_before to not_after, for a jitter in
    [0, 1]: at RENEW_AT of its life, earlier by up to JITTER of it - never later, so that at
    least a third of its life is left to retry a renewal that fails."""
    life = not_after - not_before
    jitter = min(max(jitter, 0.0), 1.0) if jitter == jitter else 0.0  # NaN: none
    return not_before + life * RENEW_AT - life * (JITTER * jitter)


@dataclass(frozen=True)
class CertExpiry:
    """One certificate of this node, as far as its expiry goes."""
    name: str  # a leaf's name (paths.Leaf.name), or "ca" / "etcd-ca"
    path: Path
    is_ca: bool
    not_before: dt.datetime | None = None  # None: unreadable (error says why)
    not_after: dt.datetime | None = None
    renewal_due: dt.datetime | None = None  # a leaf renewal can extend: renewed by then at the latest
    error: str = ""

    def where(self, root: Path) -> str:
        return str(self.path.relative_to(root)) if self.path.is_relative_to(root) else str(self.path)

    def as_dict(self, root: Path, now: dt.datetime) -> dict[str, Any]:
        def when(t: dt.datetime | None) -> str | None:
            return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")

        return {"cert": self.name, "path": self.where(root), "isCA": self.is_ca, "notAfter": when(self.not_after),
                "renewalDue": when(self.renewal_due), "error": self.error or None,
                "remainingSeconds": None if self.not_after is None else int((self.not_after - now).total_seconds())}


def node_certificates(data: DataDir) -> list[CertExpiry]:
    """This node's CAs and leaf certificates, read from pki/ (no etcd)."""
    cas = {data.ca_crt: "ca", data.etcd_cert("ca")[0]: "etcd-ca"}
    loaded: dict[Path, tuple[dt.datetime, dt.datetime] | str] = {}

    def load(path: Path) -> tuple[dt.datetime, dt.datetime] | str:
        if path not in loaded:
            try:
                loaded[path] = validity(path.read_bytes())
            except OSError as e:
                loaded[path] = f"cannot read it: {e.strerror}"
            except ValueError:
                loaded[path] = "not a readable PEM certificate"
        return loaded[path]

    out = []
    for path, name in cas.items():
        c = load(path)
        out.append(CertExpiry(name, path, True, error=c) if isinstance(c, str) else CertExpiry(name, path, True, *c))
    for leaf in node_leaves(data):
        c, ca = load(leaf.crt), load(leaf.ca_crt)
        if isinstance(c, str):
            out.append(CertExpiry(leaf.name, leaf.crt, False, error=c))
            continue
        extendable = not isinstance(ca, str) and c[1] < ca[1]
        # renewed at the latest (at start, by `certs renew`) at RENEW_AT of its life: pki.renewal_due
        out.append(CertExpiry(leaf.name, leaf.crt, False, *c, renew_at(*c, 0.0) if extendable else None))
    return out


def expiry_problems(certs: list[CertExpiry], now: dt.datetime, root: Path) -> list[str]:
    """What is wrong with this node's certificates, one sentence each ([] when nothing). Pure."""
    out = []
    for c in certs:
        where = c.where(root)
        if c.not_after is None or c.not_before is None:
            out.append(f"certificate {where}: {c.error}")
            continue
        left, expiry = c.not_after - now, f"{c.not_after:%Y-%m-%d %H:%M:%S}Z"
        due = None if c.renewal_due is None else f"{c.renewal_due:%Y-%m-%d %H:%M:%S}Z"
        renew_hint = "the controller's log says why; `etcdward certs renew`"
        if left <= dt.timedelta(0):
            out.append(f"certificate {where} expired at {expiry}")
        elif c.renewal_due is not None and now > c.renewal_due + (c.not_after - c.not_before) * RENEWAL_OVERDUE:
            out.append(f"certificate renewal is failing: {where} was due for renewal at {due} and expires at "
                       f"{expiry} ({renew_hint})")
        elif left >= EXPIRES_SOON:
            continue
        elif c.is_ca:
            out.append(f"CA certificate {where} expires within {EXPIRES_SOON.days} days, at {expiry}: etcdward "
                       "never renews a CA; rotate it by hand (README, Certificates)")
        elif c.renewal_due is None:
            out.append(f"certificate {where} expires within {EXPIRES_SOON.days} days, at {expiry}, with its CA: "
                       "renewing cannot extend it; rotate the CA (README, Certificates)")
        elif c.not_after - c.renewal_due >= EXPIRES_SOON:  # else: short-lived, renewed in its last days by design
            out.append(f"certificate {where} expires within {EXPIRES_SOON.days} days, at {expiry}, and was not "
                       f"renewed by {due} ({renew_hint})")
    return out


# -- the validity of an X.509 certificate, from its DER ------------------------------------------

def validity(pem: bytes) -> tuple[dt.datetime, dt.datetime]:
    """(notBefore, notAfter), UTC, of the first certificate of a PEM file; ValueError if it is none."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate")
    try:
        der = binascii.a2b_base64(b"".join(pem[start + len(begin):stop].split()))
    except binascii.Error:
        raise ValueError("not base64") from None
    cert, _ = _tlv(der, 0, 0x30)  # Certificate ::= SEQUENCE { tbsCertificate, ... }
    pos, _ = _tlv(der, cert, 0x30)  # TBSCertificate ::= SEQUENCE {
    if der[pos:pos + 1] == b"\xa0":  # [0] version, optional
        pos = _skip(der, pos)
    for tag in (0x02, 0x30, 0x30):  # serialNumber, signature, issuer
        pos = _skip(der, pos, tag)
    pos, _ = _tlv(der, pos, 0x30)  # validity ::= SEQUENCE { notBefore, notAfter }
    not_before, pos = _time(der, pos)
    not_after, _ = _time(der, pos)
    return not_before, not_after


def _tlv(der: bytes, pos: int, tag: int | None = None) -> tuple[int, int]:
    """(start of the contents, end) of the element at pos."""
    if pos + 2 > len(der) or (tag is not None and der[pos] != tag):
        raise ValueError("not the DER of a certificate")
    n, pos = der[pos + 1], pos + 2
    if n & 0x80:
        width = n & 0x7F
        if width == 0 or width > 4:
            raise ValueError("not the DER of a certificate")
        n, pos = int.from_bytes(der[pos:pos + width], "big"), pos + width
    if pos + n > len(der):
        raise ValueError("truncated DER")
    return pos, pos + n


def _skip(der: bytes, pos: int, tag: int | None = None) -> int:
    return _tlv(der, pos, tag)[1]


def _time(der: bytes, pos: int) -> tuple[dt.datetime, int]:
    tag = der[pos] if pos < len(der) else 0
    start, end = _tlv(der, pos)
    text = der[start:end].decode("ascii", "replace")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: 50-99 are 19xx (RFC 5280)
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("not a certificate time")
    if len(text) != 15 or not text.endswith("Z"):
        raise ValueError("not a certificate time")
    try:  # by hand: strptime imports more than the rest of this module
        y, mo, d, h, mi, sec = (int(text[i:j]) for i, j in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14)))
        return dt.datetime(y, mo, d, h, mi, sec, tzinfo=dt.timezone.utc), end
    except ValueError:
        raise ValueError("not a certificate time") from None
