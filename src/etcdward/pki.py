"""CA and leaf certificates with `cryptography`.

Rules: a CA is created once and never overwritten (a CA put there by the user is used as is);
leaf certificates get a new key when their SANs no longer match what the config asks for, or
when they were not signed by the current CA; they are *renewed* (same key, new serial and
validity) once past 2/3 of their life (`renewal_due`). Renewing keeps the key so that only the
.crt file changes, in one atomic rename: etcd reads the cert and key files separately on every
TLS handshake, and a key written before its cert would fail the handshakes in between.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .addresses import is_ip
from .certfiles import RENEW_AT, node_leaves, renew_at
from .errors import Permanent
from .paths import DataDir, atomic_write

log = logging.getLogger(__name__)

CA_DAYS = 3650
LEAF_DAYS = 365
# not-before is set this far back (clock skew between nodes), but never more than 1/20 of the
# lifetime: a 1-minute test certificate must not start its life 5 minutes in the past.
MAX_BACKDATE = dt.timedelta(minutes=5)


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


def write_cert(pair: KeyPair, crt: Path, key: Path) -> None:
    """A renewed certificate for the key already at `key`: only the .crt changes (one rename)."""
    atomic_write(crt, pair.cert_pem, 0o644)
    if key.stat().st_mode & 0o077:
        key.chmod(0o600)


def _backdate(lifetime: dt.timedelta) -> dt.timedelta:
    if lifetime <= dt.timedelta(0):  # an already expired certificate (tests): still not-before < not-after
        return MAX_BACKDATE - lifetime
    return min(MAX_BACKDATE, lifetime / 20)


def new_ca(common_name: str, lifetime: dt.timedelta = dt.timedelta(days=CA_DAYS)) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _backdate(lifetime))
        .not_valid_after(_now() + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def ensure_ca(crt: Path, key: Path, common_name: str, lifetime: dt.timedelta = dt.timedelta(days=CA_DAYS)) -> KeyPair:
    """Load the CA at crt/key, creating it only if neither file exists."""
    if crt.exists() and key.exists():
        return load_pair(crt, key)
    if crt.exists() or key.exists():
        missing = key if crt.exists() else crt
        raise PKIError(f"CA is incomplete: {missing} is missing; restore it or remove both files")
    pair = new_ca(common_name, lifetime)
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


def sans_of(cert: x509.Certificate) -> set[str]:
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
        .not_valid_before(_now() - _backdate(lifetime))
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


def renewal_due(cert: x509.Certificate) -> dt.datetime:
    """When a leaf is renewed at the latest (at start, by `certs renew`): at RENEW_AT of its life."""
    return renew_at(cert.not_valid_before_utc, cert.not_valid_after_utc, 0.0)


def jitter_of(cert: x509.Certificate) -> float:
    """A jitter in [0, 1) drawn from the certificate's random serial: stable for one
    certificate (every look at it plans the same moment), different between certificates."""
    return (cert.serial_number % 1000) / 1000


def controller_renews_at(cert: x509.Certificate) -> dt.datetime:
    return renew_at(cert.not_valid_before_utc, cert.not_valid_after_utc, jitter_of(cert))


def capped_by_ca(cert: x509.Certificate, ca: KeyPair) -> bool:
    """True when a renewal could not extend cert: it already ends with its CA."""
    return cert.not_valid_after_utc >= ca.cert.not_valid_after_utc


def leaf_state(crt: Path, key: Path, ca: KeyPair, sans: list[str] | None) -> str:
    """"current", "renew" (keep the key: new serial and validity) or "replace" (new key).
    sans=None: whatever SANs it has are right (a renewal keeps them)."""
    if not (crt.exists() and key.exists()):
        return "replace"
    try:
        pair = load_pair(crt, key)
        pair.cert.verify_directly_issued_by(ca.cert)
    except (PKIError, ValueError, TypeError, Exception):  # any doubt -> regenerate
        return "replace"
    if pair.cert.public_key().public_numbers() != pair.key.public_key().public_numbers():
        return "replace"
    if sans is not None:
        want = {str(ipaddress.ip_address(s)) if is_ip(s) else s for s in sans}
        if sans_of(pair.cert) != want:
            return "replace"
    if _now() >= renewal_due(pair.cert) and not capped_by_ca(pair.cert, ca):
        return "renew"
    return "current"


def reissue(pair: KeyPair, ca: KeyPair, lifetime: dt.timedelta) -> KeyPair:
    """pair's certificate again, for the same key, subject and extensions, with a new serial and
    a validity of lifetime from now (never beyond the CA)."""
    old = pair.cert
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(ca.cert.subject)
        .public_key(pair.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _backdate(lifetime))
        .not_valid_after(min(_now() + lifetime, ca.cert.not_valid_after_utc))
    )
    for ext in old.extensions:
        if isinstance(ext.value, x509.AuthorityKeyIdentifier):
            continue  # the CA's, added below
        builder = builder.add_extension(ext.value, critical=ext.critical)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), pair.key)


def check_ca_valid(ca: KeyPair, path: Path, lifetime: dt.timedelta) -> None:
    """PKIError when ca has expired (no certificate it signs could be valid); a warning when it
    ends within one leaf lifetime (leaves are then cut short at its end)."""
    end = ca.cert.not_valid_after_utc
    if end <= _now():
        raise PKIError(f"the CA {path} expired at {end:%Y-%m-%d %H:%M:%S}Z: no certificate it signs is valid; "
                       "rotate the CA by hand (README, Certificates)")
    if end - _now() < lifetime:
        log.warning("the CA %s expires at %s, within one certificate lifetime: leaf certificates end with it; "
                    "rotate the CA (README, Certificates)", path, f"{end:%Y-%m-%d %H:%M:%S}Z")


def ensure_leaf(
    crt: Path, key: Path, ca: KeyPair, common_name: str, sans: list[str], *, server: bool, client: bool,
    lifetime: dt.timedelta = dt.timedelta(days=LEAF_DAYS),
) -> bool:
    """Make sure crt/key is a current leaf of ca with exactly these SANs. True if (re)written."""
    state = leaf_state(crt, key, ca, sans)
    if state == "current":
        return False
    if state == "renew":
        write_cert(reissue(load_pair(crt, key), ca, lifetime), crt, key)
        log.info("renewed certificate %s (past %d%% of its life; same key)", crt, RENEW_AT * 100)
        return True
    write_pair(new_leaf(ca, common_name, sans, server=server, client=client, lifetime=lifetime), crt, key)
    log.info("wrote certificate %s (SANs %s)", crt, ", ".join(sans) or "-")
    return True


def node_sans(peer_address: str, api_address: str, extra: tuple[str, ...], hostname: str) -> list[str]:
    sans = ["localhost", "127.0.0.1", peer_address, api_address, *extra]
    if hostname:
        sans.append(hostname.lower())
    return list(dict.fromkeys(sans))


def renew_leaves(data: DataDir, lifetime: dt.timedelta, *, force: bool = False,
                 due: Callable[[x509.Certificate], dt.datetime] = renewal_due) -> dict[str, x509.Certificate]:
    """Renew (same key) each of the node's leaves that is due (all of them with force); never a
    CA. Returns the new certificates by leaf name. PKIError for a missing or broken leaf or an
    expired CA: renewing only renews; a controller start regenerates what is missing."""
    renewed: dict[str, x509.Certificate] = {}
    for leaf in node_leaves(data):
        ca = load_pair(leaf.ca_crt, leaf.ca_key)
        check_ca_valid(ca, leaf.ca_crt, lifetime)
        pair = load_pair(leaf.crt, leaf.key)
        if leaf_state(leaf.crt, leaf.key, ca, None) == "replace":
            raise PKIError(f"{leaf.crt} does not belong to {leaf.key} or was not signed by {leaf.ca_crt}; "
                           "start the controller to regenerate it")
        if capped_by_ca(pair.cert, ca) or not (force or _now() >= due(pair.cert)):
            continue
        new = reissue(pair, ca, lifetime)
        write_cert(new, leaf.crt, leaf.key)
        log.info("renewed certificate %s: serial %x, valid until %s", leaf.crt, new.cert.serial_number,
                 f"{new.cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z")
        renewed[leaf.name] = new.cert
    return renewed


def ensure_node_pki(data: DataDir, *, peer_address: str, api_address: str, sans: tuple[str, ...],
                    hostname: str, create_cas: bool = True, ca_lifetime: dt.timedelta = dt.timedelta(days=CA_DAYS),
                    cert_lifetime: dt.timedelta = dt.timedelta(days=LEAF_DAYS)) -> None:
    """Create/refresh everything under pki/ for this node: before etcd and the API start, so a
    leaf that has expired or is past 2/3 of its life is renewed before it is ever served.

    create_cas=False is used on a joining node: its CAs come from the join API, and creating
    fresh ones here would give it certificates nobody else trusts.
    """
    data.pki.mkdir(parents=True, exist_ok=True, mode=0o755)
    data.etcd_pki.mkdir(parents=True, exist_ok=True, mode=0o755)
    ca_crt, ca_key = data.etcd_cert("ca")
    if create_cas:
        ensure_ca(data.ca_crt, data.ca_key, "etcdward-ca", ca_lifetime)
        ensure_ca(ca_crt, ca_key, "etcd-ca", ca_lifetime)
    all_sans = node_sans(peer_address, api_address, sans, hostname)
    cas: dict[Path, KeyPair] = {}
    for leaf in node_leaves(data):
        if leaf.ca_crt not in cas:
            cas[leaf.ca_crt] = load_pair(leaf.ca_crt, leaf.ca_key)
            check_ca_valid(cas[leaf.ca_crt], leaf.ca_crt, cert_lifetime)
        ensure_leaf(leaf.crt, leaf.key, cas[leaf.ca_crt], leaf.common_name, all_sans if leaf.node_sans else [],
                    server=leaf.server, client=leaf.client, lifetime=cert_lifetime)
