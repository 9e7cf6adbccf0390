"""PKI: CAs are created once and never overwritten; leaves follow the config."""

from __future__ import annotations

import stat

from cryptography import x509

from etcdward import pki
from etcdward.paths import DataDir


def _ensure(data: DataDir, peer: str = "10.0.0.1", sans: tuple[str, ...] = ()) -> None:
    pki.ensure_node_pki(data, peer_address=peer, api_address=peer, sans=sans, hostname="Host-A")


def _sans(path) -> set[str]:  # type: ignore[no-untyped-def]
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


def test_layout_modes_and_sans(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = DataDir(tmp_path)
    _ensure(data, sans=("api.example.org",))
    files = [data.ca_crt, data.ca_key, data.api_crt, data.api_key] + [
        p for k in ("ca", "server", "peer", "client") for p in data.etcd_cert(k)]
    for f in files:
        assert f.exists(), f
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o600 if f.suffix == ".key" else 0o644), (f, oct(mode))
    want = {"localhost", "127.0.0.1", "10.0.0.1", "api.example.org", "host-a"}
    assert _sans(data.etcd_cert("server")[0]) == want
    assert _sans(data.api_crt) == want


def test_ca_never_overwritten_and_leaves_follow_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = DataDir(tmp_path)
    _ensure(data)
    ca_before = data.ca_crt.read_bytes(), data.etcd_cert("ca")[0].read_bytes()
    server_before = data.etcd_cert("server")[0].read_bytes()
    _ensure(data)  # same config: nothing changes
    assert data.etcd_cert("server")[0].read_bytes() == server_before
    _ensure(data, peer="10.0.0.2")  # new peer address: leaves regenerated, CAs kept
    assert (data.ca_crt.read_bytes(), data.etcd_cert("ca")[0].read_bytes()) == ca_before
    assert data.etcd_cert("server")[0].read_bytes() != server_before
    assert "10.0.0.2" in _sans(data.etcd_cert("peer")[0])


def test_user_supplied_ca_is_used_as_is(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = DataDir(tmp_path)
    user_ca = pki.new_ca("my-own-ca")
    data.etcd_pki.mkdir(parents=True)
    pki.write_pair(user_ca, *data.etcd_cert("ca"))
    _ensure(data)
    assert data.etcd_cert("ca")[0].read_bytes() == user_ca.cert_pem
    leaf = x509.load_pem_x509_certificate(data.etcd_cert("server")[0].read_bytes())
    leaf.verify_directly_issued_by(user_ca.cert)


def test_incomplete_ca_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    data = DataDir(tmp_path)
    data.pki.mkdir()
    data.ca_crt.write_bytes(pki.new_ca("x").cert_pem)
    with pytest.raises(pki.PKIError, match="ca.key is missing"):
        _ensure(data)
