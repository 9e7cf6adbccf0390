"""Config parsing and validation: every key optional, unknown keys and bad values rejected with
an error that names the key."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdward import config as C
from etcdward.addresses import is_member_name


def test_empty_and_defaults() -> None:
    cfg = C.parse("")
    assert cfg.api.port == 9443
    assert cfg.etcd.peer_port == 2380 and cfg.etcd.client_port == 2379
    eff = cfg.effective()
    assert eff.etcd.peer_address  # host-dependent default resolved
    assert eff.api_address == eff.peer_address


def test_full_k0s_shaped_file() -> None:
    cfg = C.parse("""
spec:
  api:
    address: 10.0.0.11
    port: 9443
    externalAddress: api.example.org
    sans: [api.example.org, 10.0.0.99]
  storage:
    etcd:
      peerAddress: 10.0.0.11
      peerPort: 2380
      clientPort: 2379
      extraArgs: {name: ctl-1, heartbeat-interval: 100}
""")
    assert cfg.peer_url == "https://10.0.0.11:2380"
    assert cfg.client_url == "https://127.0.0.1:2379"
    assert cfg.api_url == "https://api.example.org:9443"
    assert cfg.etcd.name == "ctl-1"
    assert cfg.etcd.extra_args["heartbeat-interval"] == "100"


def test_ipv6_peer_url_is_bracketed() -> None:
    cfg = C.parse("spec: {storage: {etcd: {peerAddress: 'fd00::1'}}}")
    assert cfg.peer_url == "https://[fd00::1]:2380"


@pytest.mark.parametrize("text,key", [
    ("spec: {storage: {etcd: {peerPort: 70000}}}", "spec.storage.etcd.peerPort"),
    ("spec: {storage: {etcd: {clientPort: 0}}}", "spec.storage.etcd.clientPort"),
    ("spec: {storage: {etcd: {peerAddress: not-an-ip}}}", "spec.storage.etcd.peerAddress"),
    ("spec: {api: {address: 999.1.1.1}}", "spec.api.address"),
    ("spec: {api: {port: abc}}", "spec.api.port"),
    ("spec: {api: {bogus: 1}}", "spec.api.bogus"),
    ("spec: {storage: {etcd: {extraArgs: {name: Bad_Name}}}}", "spec.storage.etcd.extraArgs"),
    ("spec: {storage: {etcd: {extraArgs: {data-dir: /x}}}}", "spec.storage.etcd.extraArgs"),
    ("spec: {api: {sans: ['not a name!']}}", "spec.api.sans"),
    ("spec: {reconciler: {leaseTTL: 1}}", "spec.reconciler.leaseTTL"),
    ("unknown: 1", "unknown"),
])
def test_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(C.ConfigError) as e:
        C.parse(text, "f.yaml")
    assert key in str(e.value)
    assert str(e.value).startswith("f.yaml:")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "0", "-1", "true", "'60'", "null"])
def test_joiner_timeout_must_be_a_finite_positive_number(value: str) -> None:
    with pytest.raises(C.ConfigError) as e:
        C.parse(f"spec: {{reconciler: {{joinerTimeout: {value}}}}}", "f.yaml")
    assert "spec.reconciler.joinerTimeout" in str(e.value)
    assert "unknown key" not in str(e.value)  # a known key, refused for its value


def test_joiner_timeout_default_and_round_trip() -> None:
    assert C.parse("").spec.reconciler.joiner_timeout == 60
    cfg = C.parse("spec: {reconciler: {joinerTimeout: 2.5}}")
    assert cfg.spec.reconciler.joiner_timeout == 2.5
    assert C.parse(cfg.to_yaml()).spec.reconciler.joiner_timeout == 2.5  # state/config.yaml reads back


def test_not_yaml_and_not_mapping() -> None:
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.parse("spec: [", "f")
    with pytest.raises(C.ConfigError, match="mapping"):
        C.parse("- 1", "f")


def test_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(C.ConfigError, match="cannot read config file"):
        C.load(tmp_path / "nope.yaml")


# -- generated input ------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(string.ascii_letters, max_size=12), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(trees)
def test_arbitrary_documents_parse_or_fail_cleanly(doc: object) -> None:
    try:
        cfg = C.parse(yaml.safe_dump(doc), "gen")
    except C.ConfigError as e:
        assert str(e).startswith("gen:")
    else:
        assert isinstance(cfg, C.Config)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["peerAddress", "peerPort", "clientPort", "extraArgs", "binary", "zzz"]),
                       scalars, max_size=4))
def test_generated_etcd_sections(section: dict[str, object]) -> None:
    text = yaml.safe_dump({"spec": {"storage": {"etcd": section}}})
    try:
        cfg = C.parse(text, "gen")
    except C.ConfigError as e:
        msg = str(e)
        # the error names one of the keys we generated
        assert any(f"spec.storage.etcd.{k}" in msg for k in section), msg
    else:
        assert 1 <= cfg.etcd.peer_port <= 65535


@given(st.text(max_size=70))
def test_member_name_validator_matches_rfc1123(name: str) -> None:
    import re

    ok = is_member_name(name)
    if ok:
        assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", name)
        assert ".." not in name and len(name) <= 253
