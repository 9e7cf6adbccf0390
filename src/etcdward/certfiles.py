"""This node's certificate files and the dates in them, read without the cryptography package.

An idle controller only looks at dates (when is a leaf due for renewal, when does it expire:
certrenewal.py, /metrics). Importing cryptography costs a controller ~9 MiB of RSS for good (a
loaded extension module is never unloaded), so it is imported only for PKI work itself:
generating, renewing, checking signatures (pki.py, run in a child process at start: pkiprocess.py).
"""

from __future__ import annotations

import binascii
import datetime as dt
from pathlib import Path

from .frozen import frozen
from .paths import DataDir, atomic_write

RENEW_AT = 2 / 3  # of a leaf's life: leaves a third of it to retry a failed renewal
# Controllers renew a little before RENEW_AT, each certificate at its own moment, so that the
# leaves of nodes started together are not all renewed in the same second.
JITTER = 0.1  # of the life: renewal somewhere in [RENEW_AT - JITTER, RENEW_AT] of it


@frozen
class Leaf:
    """One of a node's leaf certificates and the CA that signs it."""
    name: str  # api | etcd-server | etcd-peer | etcd-client
    crt: Path
    key: Path
    ca_crt: Path
    ca_key: Path
    common_name: str
    node_sans: bool  # carries the node's SANs (the client certificate has none)
    server: bool
    client: bool


def node_leaves(data: DataDir) -> list[Leaf]:
    ca_crt, ca_key = data.etcd_cert("ca")
    # Peer certs act as clients when dialling other peers, so they carry both usages.
    etcd = [Leaf(f"etcd-{kind}", *data.etcd_cert(kind), ca_crt, ca_key, f"etcd-{kind}", True, True, True)
            for kind in ("server", "peer")]
    return [Leaf("api", data.api_crt, data.api_key, data.ca_crt, data.ca_key, "etcdward-api", True, True, False),
            *etcd,
            Leaf("etcd-client", *data.etcd_cert("client"), ca_crt, ca_key, "etcdward-client", False, False, True)]


def write_pem(cert_pem: bytes, key_pem: bytes, crt: Path, key: Path) -> None:
    atomic_write(key, key_pem, 0o600)
    atomic_write(crt, cert_pem, 0o644)


def renew_at(not_before: dt.datetime, not_after: dt.datetime, jitter: float) -> dt.datetime:
    """When a controller renews a leaf valid from not_before to not_after, for a jitter in
    [0, 1]: at RENEW_AT of its life, earlier by up to JITTER of it - never later, so that at
    least a third of its life is left to retry a renewal that fails."""
    life = not_after - not_before
    jitter = min(max(jitter, 0.0), 1.0) if jitter == jitter else 0.0  # NaN: none
    return not_before + life * RENEW_AT - life * (JITTER * jitter)


@frozen
class CertDates:
    """What an idle controller needs of a certificate: its serial and validity (UTC)."""
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def renewal_due(self) -> dt.datetime:
        """When a leaf is renewed at the latest (at start, by `certs renew`): at RENEW_AT of its life."""
        return renew_at(self.not_before, self.not_after, 0.0)

    @property
    def controller_renews_at(self) -> dt.datetime:
        # the jitter comes from the random serial: stable for one certificate (pki.jitter_of)
        return renew_at(self.not_before, self.not_after, (self.serial % 1000) / 1000)


def read_dates(path: Path) -> CertDates:
    """The serial and validity of the first certificate in a PEM file. OSError if it cannot be
    read, ValueError if it is no PEM certificate."""
    return parse_dates(path.read_bytes())


def parse_dates(pem: bytes) -> CertDates:
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start + 1)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate")
    try:
        der = binascii.a2b_base64(b"".join(pem[start + len(begin):stop].split()), strict_mode=True)
        cert, _ = _tlv(der, 0, 0x30)
        tbs, _ = _tlv(cert, 0, 0x30)
        i = 0
        if tbs[:1] == b"\xa0":  # [0] version
            _, i = _tlv(tbs, i, 0xA0)
        serial, i = _tlv(tbs, i, 0x02)
        _, i = _tlv(tbs, i, 0x30)  # signature algorithm
        _, i = _tlv(tbs, i, 0x30)  # issuer
        validity, _ = _tlv(tbs, i, 0x30)
        not_before, j = _time(validity, 0)
        not_after, _ = _time(validity, j)
    except (IndexError, binascii.Error) as e:
        raise ValueError(f"not a readable certificate ({e})") from None
    return CertDates(int.from_bytes(serial, "big", signed=True), not_before, not_after)


def _tlv(der: bytes, i: int, tag: int) -> tuple[bytes, int]:
    """The content of the DER element at i, which must have `tag`, and the index after it."""
    if der[i] != tag:
        raise ValueError(f"unexpected DER tag {der[i]:#x} (wanted {tag:#x})")
    length, i = der[i + 1], i + 2
    if length & 0x80:
        n = length & 0x7F
        length, i = int.from_bytes(der[i:i + n], "big"), i + n
    if i + length > len(der):
        raise ValueError("truncated DER")
    return der[i:i + length], i + length


def _time(der: bytes, i: int) -> tuple[dt.datetime, int]:
    """A UTCTime (YYMMDDHHMMSSZ, RFC 5280: YY < 50 is 20YY) or GeneralizedTime (YYYYMMDDHHMMSSZ)."""
    tag = der[i]
    raw, j = _tlv(der, i, tag) if tag in (0x17, 0x18) else _tlv(der, i, 0x17)
    text = raw.decode("ascii")
    if tag == 0x17:
        year = int(text[:2])
        text = f"{2000 + year if year < 50 else 1900 + year}{text[2:]}"
    # by hand, not strptime: its import (_strptime, locale, calendar) costs `etcdward status` ~3 ms
    if len(text) != 15 or text[14] != "Z" or not text[:14].isdigit():
        raise ValueError(f"certificate time {text!r} is not YYYYMMDDHHMMSSZ")
    when = dt.datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                       int(text[12:14]), tzinfo=dt.timezone.utc)
    return when, j
