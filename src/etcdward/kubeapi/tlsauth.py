"""Client-certificate authentication of the kube API, on the join API's TLS listener.

The listener asks every client for a certificate but requires none: join clients present none
and keep authenticating with their bearer token. kube clients present one, and the *app*
decides, like kube-apiserver (Go's `tls.RequestClientCert` + its x509 authenticator): a
certificate signed by the cluster CA (`pki/ca.crt`), within its validity period, usable for
client auth → user = its CN; none, another CA's, expired → 401 with a Status body.

Python's ssl module cannot request a certificate without also verifying it in the handshake
(which would turn a foreign or expired certificate into a TLS alert instead of a 401), so
`request_any_client_certificate` replaces OpenSSL's verification of the client chain with one
that accepts (SSL_CTX_set_cert_verify_callback via ctypes); the chain is then checked here, on
every request. It checks that it found the right SSL_CTX and otherwise falls back to verifying
in the handshake against the cluster CA (still safe; only the error a bad client sees differs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .status import unauthorized

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

PEER_CERT = "etcdward_peer_cert"  # key in the ASGI scope's state: the client's DER certificate or None

_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_accept_all = _VERIFY_CB(lambda _store_ctx, _arg: 1)  # kept alive for the life of the process


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int | None:
    # CPython's PySSLContext starts with PyObject_HEAD followed by `SSL_CTX *ctx`.
    return ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value


def request_any_client_certificate(ctx: ssl.SSLContext, ca_file: Path) -> bool:
    """Make ctx ask for a client certificate and accept any in the handshake (the app verifies
    it). Returns False, with ctx verifying against ca_file in the handshake, if that cannot be
    done safely on this Python/OpenSSL."""
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cafile=str(ca_file))
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("ssl") or "libssl.so.3")
        get_mode = lib.SSL_CTX_get_verify_mode
        get_mode.argtypes, get_mode.restype = [ctypes.c_void_p], ctypes.c_int
        set_cb = lib.SSL_CTX_set_cert_verify_callback
        set_cb.argtypes, set_cb.restype = [ctypes.c_void_p, _VERIFY_CB, ctypes.c_void_p], None
        ptr = _ssl_ctx_pointer(ctx)
        # Is ptr really ctx's SSL_CTX? Its verify mode must follow ctx's (OPTIONAL = 1, REQUIRED = 3).
        ok = bool(ptr) and get_mode(ptr) == 1
        if ok:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ok = get_mode(ptr) == 3
            ctx.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, AttributeError, ValueError) as e:
        log.warning("kube API: cannot take over client-certificate checks (%s); foreign or expired client "
                    "certificates fail the TLS handshake instead of getting 401", e)
        return False
    if not ok:
        log.warning("kube API: unexpected ssl module layout; foreign or expired client certificates fail the TLS "
                    "handshake instead of getting 401")
        return False
    set_cb(ptr, _accept_all, None)
    return True


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol that puts the client's certificate into each request's scope
    state (uvicorn's scope carries no TLS information)."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        sslobj = transport.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        self.app_state = {**self.app_state, PEER_CERT: der}  # per connection; the server's dict is shared
        super().connection_made(transport)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ClusterCA:
    """The cluster CA certificate, loaded on the first client certificate to check: cryptography
    (~9 MiB of RSS for good) is imported only once kubectl or a remote defrag connects."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cert: x509.Certificate | None = None

    def cert(self) -> x509.Certificate:
        if self._cert is None:
            from cryptography import x509

            self._cert = x509.load_pem_x509_certificate(self.path.read_bytes())
        return self._cert


def authenticate(der: bytes | None, ca: x509.Certificate | ClusterCA, now: dt.datetime | None = None) -> str:
    """The user (CN) of a client certificate signed by ca, or KubeError 401."""
    if not der:
        raise unauthorized()
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if isinstance(ca, ClusterCA):
        ca = ca.cert()
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(ca)
    except Exception as e:  # noqa: BLE001 - any doubt about the chain is a refusal
        log.info("kube API: refused a client certificate: %s", e)
        raise unauthorized() from None
    t = now or _now()
    if not cert.not_valid_before_utc <= t <= cert.not_valid_after_utc:
        log.info("kube API: refused a client certificate outside its validity (%s .. %s)",
                 cert.not_valid_before_utc, cert.not_valid_after_utc)
        raise unauthorized()
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise unauthorized()
    except x509.ExtensionNotFound:
        pass
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    user = str(names[0].value) if names else ""
    if not user:
        raise unauthorized()
    return user
