"""Certificates without a cluster (issue 14, part 2): the renewal schedule, spec.pki, renewal at
start (before anything is served), `certs check-expiration` and `certs renew` on a data dir."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from etcdward import config as C
from etcdward import pki
from etcdward.cli.main import cli
from etcdward.paths import DataDir
from tests.test_bad_input import assert_refused, etcdward

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


# -- the schedule (pure) -------------------------------------------------------------------------
def test_renewal_is_at_two_thirds_earlier_by_at_most_a_tenth_of_the_life() -> None:
    end = T0 + dt.timedelta(hours=300)
    assert pki.renew_at(T0, end, 0.0) == T0 + dt.timedelta(hours=200)
    assert pki.renew_at(T0, end, 1.0) == T0 + dt.timedelta(hours=170)
    assert pki.renew_at(T0, end, 0.5) == T0 + dt.timedelta(hours=185)
    for bad in (-3.0, 7.0, float("nan")):  # clamped: never later than 2/3, never before 2/3 - 1/10
        assert T0 + dt.timedelta(hours=170) <= pki.renew_at(T0, end, bad) <= T0 + dt.timedelta(hours=200)
    short = T0 + dt.timedelta(minutes=1)  # a test lifetime: renewed 34-40 s in
    assert dt.timedelta(seconds=34) <= pki.renew_at(T0, short, 0.99) - T0 <= dt.timedelta(seconds=40)


def test_jitter_is_stable_per_certificate_and_spread_between_them() -> None:
    ca = pki.new_ca("ca")
    leaves = [pki.new_leaf(ca, "x", [], server=True, client=False).cert for _ in range(20)]
    jitters = [pki.jitter_of(c) for c in leaves]
    assert all(0 <= j < 1 for j in jitters) and len(set(jitters)) > 10
    assert [pki.jitter_of(c) for c in leaves] == jitters
    c = leaves[0]
    assert pki.controller_renews_at(c) <= pki.renewal_due(c) < c.not_valid_after_utc


def test_dates_read_without_cryptography_match_it_including_generalized_time() -> None:
    # certfiles.py reads the serial and validity from the DER so that an idle controller and
    # `status` need no cryptography; lifetimes past 2049 are GeneralizedTime (RFC 5280)
    from etcdward.certfiles import parse_dates

    ca = pki.new_ca("ca", dt.timedelta(days=40 * 365))
    for pair in (ca, pki.new_leaf(ca, "x", ["10.0.0.1"], server=True, client=True),
                 pki.new_leaf(ca, "y", [], server=False, client=True, lifetime=dt.timedelta(minutes=1))):
        got = parse_dates(b"junk before\n" + pair.cert_pem)
        assert (got.serial, got.not_before, got.not_after) == (
            pair.cert.serial_number, pair.cert.not_valid_before_utc, pair.cert.not_valid_after_utc)
        assert got.controller_renews_at == pki.controller_renews_at(pair.cert)
        assert got.renewal_due == pki.renewal_due(pair.cert)
    assert ca.cert.not_valid_after_utc.year > 2050
    pem = ca.cert_pem
    for bad in (b"", b"not a certificate", pem.replace(b"MII", b"!!!", 1), pem[:len(pem) // 2] + pem[-30:]):
        with pytest.raises(ValueError):
            parse_dates(bad)


# -- spec.pki ------------------------------------------------------------------------------------
def test_pki_spec_defaults_and_round_trip() -> None:
    p = C.parse("").spec.pki
    assert (p.ca_lifetime, p.cert_lifetime) == ("87600h", "8760h")
    assert p.cert_lifetime_td == dt.timedelta(days=365) and p.ca_lifetime_td == dt.timedelta(days=3650)
    cfg = C.parse("spec: {pki: {caLifetime: 20d, certLifetime: 1m}}")
    assert cfg.spec.pki.cert_lifetime_td == dt.timedelta(minutes=1)
    assert C.parse(cfg.to_yaml()).spec.pki == cfg.spec.pki


@pytest.mark.parametrize("text,needle", [
    ("certLifetime: 8760h, caLifetime: 8760h", "spec.pki: certLifetime (8760h) must be shorter than caLifetime"),
    ("certLifetime: 30s", "spec.pki.certLifetime: '30s' is shorter than the minimum of 60s"),
    ("caLifetime: 8760", "spec.pki.caLifetime: 8760 is not a duration"),
    ("certLifetime: 1y", "spec.pki.certLifetime"),
    ("certLifetime: true", "spec.pki.certLifetime"),
    ("leafLifetime: 1h", "spec.pki.leafLifetime: unknown key"),
])
def test_bad_pki_keys_are_refused_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"spec:\n  pki: {{{text}}}\n")
    assert_refused(etcdward("config", "validate", "-c", str(cfg)), needle)


# -- at start ------------------------------------------------------------------------------------
def _node_pki(data: DataDir, lifetime: dt.timedelta = dt.timedelta(days=365)) -> None:
    pki.ensure_node_pki(data, peer_address="10.0.0.1", api_address="10.0.0.1", sans=(), hostname="h",
                        cert_lifetime=lifetime)


def _cert(path: Path):  # type: ignore[no-untyped-def]
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def test_start_renews_expired_and_two_thirds_old_leaves_with_their_keys(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = DataDir(tmp_path)
    _node_pki(data)
    crt, key = data.etcd_cert("server")
    ca = pki.load_pair(*data.etcd_cert("ca"))
    expired = pki.reissue(pki.load_pair(crt, key), ca, -dt.timedelta(minutes=1))
    pki.write_cert(expired, crt, key)
    keys = {p: p.read_bytes() for p in data.pki.rglob("*.key")}
    others = {p: p.read_bytes() for p in data.pki.rglob("*.crt") if p != crt}
    _node_pki(data)
    new = _cert(crt)
    assert new.serial_number != expired.cert.serial_number and new.not_valid_after_utc > pki._now()
    assert {p: p.read_bytes() for p in data.pki.rglob("*.key")} == keys  # same keys, CAs untouched
    assert {p: p.read_bytes() for p in data.pki.rglob("*.crt") if p != crt} == others
    # 300 days into a 365-day life: past 2/3, renewed at start; a CA is never renewed
    monkeypatch.setattr(pki, "_now", lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=300))
    before = {p: _cert(p).serial_number for p in data.pki.rglob("*.crt")}
    _node_pki(data)
    after = {p: _cert(p).serial_number for p in data.pki.rglob("*.crt")}
    assert {p for p in after if after[p] != before[p]} == {leaf.crt for leaf in pki.node_leaves(data)}


def test_an_expired_ca_is_refused_naming_it(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    data.etcd_pki.mkdir(parents=True)
    pki.write_pair(pki.new_ca("etcd-ca", -dt.timedelta(minutes=1)), *data.etcd_cert("ca"))
    with pytest.raises(pki.PKIError, match=r"etcd/ca.crt expired at .*rotate the CA"):
        _node_pki(data)


# -- the CLI -------------------------------------------------------------------------------------
@pytest.fixture
def node_dir(tmp_path: Path) -> DataDir:
    """A data dir as a controller leaves it: pki/ and the effective config (1-minute leaves)."""
    data = DataDir(tmp_path / "data")
    _node_pki(data, dt.timedelta(minutes=1))
    cfg = C.parse("spec: {storage: {etcd: {peerAddress: 10.0.0.1}}, pki: {certLifetime: 1m}}")
    data.state.mkdir()
    data.effective_config.write_text(cfg.to_yaml())
    return data


def test_check_expiration_lists_every_certificate_as_json(node_dir: DataDir) -> None:
    (node_dir.pki / "extra").mkdir()
    (node_dir.pki / "extra" / "broken.crt").write_text("not a certificate")
    r = CliRunner().invoke(cli, ["certs", "check-expiration", "--data-dir", str(node_dir.root), "-o", "json"])
    assert r.exit_code == 0, r.output
    certs = {c["path"]: c for c in json.loads(r.output)["certificates"]}
    assert set(certs) == {"pki/ca.crt", "pki/api.crt", "pki/extra/broken.crt",
                          *(f"pki/etcd/{k}.crt" for k in ("ca", "server", "peer", "client"))}
    assert "not a readable PEM certificate" in certs["pki/extra/broken.crt"]["error"]
    server = certs["pki/etcd/server.crt"]
    assert server["subject"] == "CN=etcd-server" and server["issuer"] == "CN=etcd-ca" and not server["isCA"]
    assert set(server["sans"]) == {"10.0.0.1", "127.0.0.1", "h", "localhost"}
    assert 0 < server["remainingSeconds"] <= 60 and server["expired"] is False
    assert server["notBefore"] < server["renewAt"] < server["notAfter"]
    ca = certs["pki/etcd/ca.crt"]
    assert ca["isCA"] and ca["renewAt"] is None and ca["remainingSeconds"] > 86400 * 3000
    table = CliRunner().invoke(cli, ["certs", "check-expiration", "--data-dir", str(node_dir.root)])
    assert table.exit_code == 0 and "pki/etcd/peer.crt" in table.output and "REMAINING" in table.output


def test_check_expiration_reports_an_expired_certificate_and_exits_0_like_kubeadm(node_dir: DataDir) -> None:
    crt, key = node_dir.etcd_cert("client")
    ca = pki.load_pair(*node_dir.etcd_cert("ca"))
    pki.write_cert(pki.reissue(pki.load_pair(crt, key), ca, -dt.timedelta(minutes=1)), crt, key)
    r = CliRunner().invoke(cli, ["certs", "check-expiration", "--data-dir", str(node_dir.root), "-o", "json"])
    assert r.exit_code == 0
    client = next(c for c in json.loads(r.output)["certificates"] if c["path"] == "pki/etcd/client.crt")
    assert client["expired"] is True and client["remainingSeconds"] < 0


def test_renew_reissues_every_leaf_with_its_key_and_never_a_ca(node_dir: DataDir) -> None:
    files = {p: p.read_bytes() for p in node_dir.pki.rglob("*")if p.is_file()}
    serials = {p: _cert(p).serial_number for p in node_dir.pki.rglob("*.crt")}
    r = CliRunner().invoke(cli, ["certs", "renew", "--data-dir", str(node_dir.root)])
    assert r.exit_code == 0, r.output
    assert r.output.count("renewed pki/") == 4
    changed = {p for p in files if p.read_bytes() != files[p]}
    assert changed == {leaf.crt for leaf in pki.node_leaves(node_dir)}
    assert all(_cert(p).serial_number != serials[p] for p in changed)
    for p in node_dir.pki.rglob("*.key"):
        assert p.stat().st_mode & 0o777 == 0o600


def test_renew_refuses_a_data_dir_without_a_controller(tmp_path: Path) -> None:
    assert_refused(etcdward("certs", "renew", "--data-dir", str(tmp_path)), "no effective config")
    assert_refused(etcdward("certs", "check-expiration", "--data-dir", str(tmp_path)), "etcdward data dir")


# -- what `status` and /metrics say about expiry (certexpiry.node_certificates, expiry_problems) ---
def test_expiry_problems_name_failing_renewal_and_certificates_expiring_within_7_days(node_dir: DataDir) -> None:
    from etcdward.certexpiry import CertExpiry, expiry_problems, node_certificates

    certs = {c.name: c for c in node_certificates(node_dir)}
    assert set(certs) == {"ca", "etcd-ca", "api", "etcd-server", "etcd-peer", "etcd-client"}
    assert certs["ca"].is_ca and certs["ca"].renewal_due is None and not certs["api"].is_ca
    api = certs["api"]  # a 1-minute leaf: its whole last third is inside 7 days, only renewal is watched
    assert api.renewal_due is not None and api.not_before is not None and api.not_after is not None
    root = node_dir.root
    assert expiry_problems(list(certs.values()), api.renewal_due, root) == []
    late = api.renewal_due + (api.not_after - api.not_before) * 0.11
    assert expiry_problems([api], late, root) == [
        f"certificate renewal is failing: pki/api.crt was due for renewal at {api.renewal_due:%Y-%m-%d %H:%M:%S}Z "
        f"and expires at {api.not_after:%Y-%m-%d %H:%M:%S}Z (the controller's log says why; `etcdward certs renew`)"]
    assert expiry_problems([api], api.not_after, root) == [
        f"certificate pki/api.crt expired at {api.not_after:%Y-%m-%d %H:%M:%S}Z"]
    year = dt.timedelta(days=365)
    ca = CertExpiry("etcd-ca", node_dir.root / "pki/etcd/ca.crt", True, T0, T0 + year)
    capped = CertExpiry("etcd-peer", node_dir.root / "pki/etcd/peer.crt", False, T0, T0 + year)  # ends with its CA
    stuck = CertExpiry("etcd-server", node_dir.root / "pki/etcd/server.crt", False, T0, T0 + year,
                       T0 + year * 2 / 3)
    five_days_left = T0 + year - dt.timedelta(days=5)
    got = expiry_problems([ca, capped], five_days_left, root)
    assert [p.split(" expires within 7 days")[0] for p in got] == ["CA certificate pki/etcd/ca.crt",
                                                                  "certificate pki/etcd/peer.crt"]
    assert "rotate it by hand" in got[0] and "renewing cannot extend it" in got[1]
    assert expiry_problems([ca, capped, stuck], T0 + year / 2, root) == []
    assert expiry_problems([stuck], T0 + year * 0.7, root) == []  # due, within its tenth of grace
    assert expiry_problems([stuck], T0 + year * 0.8, root)[0].startswith("certificate renewal is failing")
    (node_dir.pki / "api.crt").write_text("garbage")
    assert "certificate pki/api.crt: not a readable PEM certificate" in expiry_problems(
        node_certificates(node_dir), T0, root)


def test_renew_refuses_timeout_without_all(node_dir: DataDir) -> None:
    files = {p: p.read_bytes() for p in node_dir.pki.rglob("*") if p.is_file()}
    r = CliRunner().invoke(cli, ["certs", "renew", "--timeout", "5", "--data-dir", str(node_dir.root)])
    assert r.exit_code == 2 and "--timeout applies only with --all" in r.output, r.output
    assert {p: p.read_bytes() for p in node_dir.pki.rglob("*") if p.is_file()} == files
