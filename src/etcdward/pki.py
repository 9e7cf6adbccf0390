"""CA and leaf certificates with `cryptography`.

Rules: a CA is created once and never overwritten (a CA put there by the user is used as is);
leaf certificates are regenerated when their SANs no longer match what the config asks for,
or when they were not signed by the current CA, or expire within 30 days.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .addresses import is_ip
from .errors import Permanent
from .paths import DataDir, atomic_write

log = logging.getLogger(__name__)

CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)


class PKIError(Permanent):
    pass


@dataclass(frozen=True)
class KeyPair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def load_pair(crt: Path, key: Path) -> KeyPair:
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        pkey = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise PKIError(f"cannot load {crt} / {key}: {e}") from None
    return KeyPair(cert, pkey)  # type: ignore[arg-type]


def write_pair(pair: KeyPair, crt: Path, key: Path) -> None:
    # Key first: a crash between the two writes leaves a cert without a matching key only
    # transiently; the next start sees the mismatch and regenerates the leaf.
    atomic_write(key, pair.key_pem, 0o600)
    atomic_write(crt, pair.cert_pem, 0o644)


def write_pem(cert_pem: bytes, key_pem: bytes, crt: Path, key: Path) -> None:
    atomic_write(key, key_pem, 0o600)
    atomic_write(crt, cert_pem, 0o644)


def new_ca(common_name: str) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def ensure_ca(crt: Path, key: Path, common_name: str) -> KeyPair:
    """Load the CA at crt/key, creating it only if neither file exists."""
    if crt.exists() and key.exists():
        return load_pair(crt, key)
    if crt.exists() or key.exists():
        missing = key if crt.exists() else crt
        raise PKIError(f"CA is incomplete: {missing} is missing; restore it or remove both files")
    pair = new_ca(common_name)
    write_pair(pair, crt, key)
    log.info("created CA %s (%s)", crt, common_name)
    return pair


def _san_entries(sans: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for s in dict.fromkeys(sans):  # de-duplicate, keep order
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            out.append(x509.DNSName(s))
    return out


def _sans_of(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


def new_leaf(ca: KeyPair, common_name: str, sans: list[str], *, server: bool, client: bool,
             lifetime: dt.timedelta = dt.timedelta(days=LEAF_DAYS)) -> KeyPair:
    """A leaf certificate signed by ca, valid for lifetime (never beyond the CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(min(_now() + lifetime, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_san_entries(sans)), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def leaf_is_current(crt: Path, key: Path, ca: KeyPair, sans: list[str]) -> bool:
    if not (crt.exists() and key.exists()):
        return False
    try:
        pair = load_pair(crt, key)
        pair.cert.verify_directly_issued_by(ca.cert)
    except (PKIError, ValueError, TypeError, Exception):  # any doubt -> regenerate
        return False
    if pair.cert.public_key().public_numbers() != pair.key.public_key().public_numbers():
        return False
    if pair.cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    want = {str(ipaddress.ip_address(s)) if is_ip(s) else s for s in sans}
    return _sans_of(pair.cert) == want


def ensure_leaf(
    crt: Path, key: Path, ca: KeyPair, common_name: str, sans: list[str], *, server: bool, client: bool
) -> bool:
    """Make sure crt/key is a current leaf of ca with exactly these SANs. True if (re)written."""
    if leaf_is_current(crt, key, ca, sans):
        return False
    write_pair(new_leaf(ca, common_name, sans, server=server, client=client), crt, key)
    log.info("wrote certificate %s (SANs %s)", crt, ", ".join(sans) or "-")
    return True


def node_sans(peer_address: str, api_address: str, extra: tuple[str, ...], hostname: str) -> list[str]:
    sans = ["localhost", "127.0.0.1", peer_address, api_address, *extra]
    if hostname:
        sans.append(hostname.lower())
    return list(dict.fromkeys(sans))


def ensure_node_pki(data: DataDir, *, peer_address: str, api_address: str, sans: tuple[str, ...],
                    hostname: str, create_cas: bool = True) -> None:
    """Create/refresh everything under pki/ for this node.

    create_cas=False is used on a joining node: its CAs come from the join API, and creating
    fresh ones here would give it certificates nobody else trusts.
    """
    data.pki.mkdir(parents=True, exist_ok=True, mode=0o755)
    data.etcd_pki.mkdir(parents=True, exist_ok=True, mode=0o755)
    ca_crt, ca_key = data.etcd_cert("ca")
    if create_cas:
        cluster_ca = ensure_ca(data.ca_crt, data.ca_key, "etcdward-ca")
        etcd_ca = ensure_ca(ca_crt, ca_key, "etcd-ca")
    else:
        cluster_ca = load_pair(data.ca_crt, data.ca_key)
        etcd_ca = load_pair(ca_crt, ca_key)
    all_sans = node_sans(peer_address, api_address, sans, hostname)
    ensure_leaf(data.api_crt, data.api_key, cluster_ca, "etcdward-api", all_sans, server=True, client=False)
    # Peer certs act as clients when dialling other peers, so they carry both usages.
    for kind in ("server", "peer"):
        crt, key = data.etcd_cert(kind)
        ensure_leaf(crt, key, etcd_ca, f"etcd-{kind}", all_sans, server=True, client=True)
    crt, key = data.etcd_cert("client")
    ensure_leaf(crt, key, etcd_ca, "etcdward-client", [], server=False, client=True)
