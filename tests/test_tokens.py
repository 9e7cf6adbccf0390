"""Join tokens (issue 3): k0s wire format, storage as a hash only, list/invalidate/expiry,
and the CLI's errors. The token is decoded with base64 + gzip + yaml, never etcdward.tokens.
Parsers get hypothesis tests."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import re
import time

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.cluster import Cluster, Node
from etcdward import tokens
from etcdward.durations import parse_duration
from tests.join_helpers import TOKEN_BEARER_RE, api_client, bearer_of, kubeconfig, shared_cluster


@pytest.fixture(scope="module")
def tcluster(tmp_path_factory: pytest.TempPathFactory):
    yield from shared_cluster(tmp_path_factory, "tokens")


@pytest.fixture(scope="module")
def n1(tcluster: Cluster) -> Node:
    return tcluster.bootstrap("n1")


def create(n1: Node, *args: str, check: bool = True):
    return n1.cli("token", "create", *args, "--data-dir", str(n1.data.root), check=check)


def token_list(n1: Node) -> list[dict]:
    return json.loads(n1.cli("token", "list", "-o", "json", "--data-dir", str(n1.data.root)).stdout)


def stored_ids(n1: Node) -> set[str]:
    p = n1.etcdctl("get", "--prefix", "--keys-only", "/etcdward/tokens/")
    assert p.returncode == 0, p.stderr
    return {k.removeprefix("/etcdward/tokens/") for k in p.stdout.split()}


def ca_status(n1: Node, bearer: str) -> httpx.Response:
    with api_client(n1, bearer) as c:
        return c.get("/v1beta1/ca")


def test_token_is_a_k0s_kubeconfig_stored_as_hash(n1: Node) -> None:
    out = create(n1, "--role", "controller").stdout
    assert len(out.strip().splitlines()) == 1, out
    tok = out.strip()
    kc = kubeconfig(tok)  # base64(gzip(yaml)) or this raises
    assert len(kc["clusters"]) == 1 and len(kc["users"]) == 1 and len(kc["contexts"]) == 1
    cluster = kc["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://{n1.address}:9443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == n1.data.ca_crt.read_bytes()
    ctx = next(c["context"] for c in kc["contexts"] if c["name"] == kc.get("current-context", kc["contexts"][0]["name"]))
    assert ctx["user"] == "controller-bootstrap" == kc["users"][0]["name"]
    bearer = kc["users"][0]["user"]["token"]
    assert re.fullmatch(TOKEN_BEARER_RE, bearer), bearer
    tid, secret = bearer.split(".")

    # etcd holds a record under /etcdward/tokens/<id> with a hash, never the secret
    p = n1.etcdctl("get", "--prefix", "/etcdward/tokens/")
    assert p.returncode == 0, p.stderr
    assert f"/etcdward/tokens/{tid}" in p.stdout
    assert secret not in p.stdout
    rec = json.loads(n1.etcdctl("get", "--print-value-only", f"/etcdward/tokens/{tid}").stdout)
    assert rec["role"] == "controller" and secret not in json.dumps(rec)
    # default expiry 24h
    created, expires = dt.datetime.fromisoformat(rec["created"]), dt.datetime.fromisoformat(rec["expires"])
    assert abs((expires - created) - dt.timedelta(hours=24)) < dt.timedelta(seconds=2)
    # the token works against the join API
    assert ca_status(n1, bearer).status_code == 200


def test_list_never_shows_secrets(n1: Node) -> None:
    forever = bearer_of(create(n1, "--role", "controller", "--expiry", "0").stdout)
    hour = bearer_of(create(n1, "--role", "controller", "--expiry", "1h30m").stdout)
    rows = {r["id"]: r for r in token_list(n1)}
    for bearer in (forever, hour):
        tid = bearer.split(".")[0]
        assert rows[tid]["role"] == "controller"
        assert {"id", "role", "created", "expires"} <= set(rows[tid])
    assert rows[forever.split(".")[0]]["expires"] is None  # --expiry 0: never
    r = rows[hour.split(".")[0]]
    span = dt.datetime.fromisoformat(r["expires"]) - dt.datetime.fromisoformat(r["created"])
    assert abs(span - dt.timedelta(minutes=90)) < dt.timedelta(seconds=2)
    table = n1.cli("token", "list", "--data-dir", str(n1.data.root)).stdout
    as_json = n1.cli("token", "list", "-o", "json", "--data-dir", str(n1.data.root)).stdout
    for bearer in (forever, hour):
        tid, secret = bearer.split(".")
        assert tid in table and secret not in table and secret not in as_json
    assert any(forever.split(".")[0] in ln and "never" in ln for ln in table.splitlines()), table
    assert ca_status(n1, forever).status_code == 200  # a never-expiring token works


def test_invalidated_and_expired_tokens_are_refused(n1: Node) -> None:
    gone = bearer_of(create(n1, "--role", "controller").stdout)
    short = bearer_of(create(n1, "--role", "controller", "--expiry", "1s").stdout)
    keep = bearer_of(create(n1, "--role", "controller").stdout)
    assert ca_status(n1, gone).status_code == 200
    out = n1.cli("token", "invalidate", gone.split(".")[0], "--data-dir", str(n1.data.root)).stdout
    assert gone.split(".")[0] in out
    assert gone.split(".")[0] not in stored_ids(n1)
    time.sleep(1.5)
    body = {"node": "nobody", "peerAddress": "https://127.77.0.1:2380"}
    for bearer in (gone, short):
        with api_client(n1, bearer) as c:
            for resp in (c.get("/v1beta1/ca"), c.post("/v1beta1/etcd/members", json=body)):
                assert (resp.status_code, resp.text) == (401, "go away"), bearer
    assert next(r for r in token_list(n1) if r["id"] == short.split(".")[0])["expired"] is True
    assert ca_status(n1, keep).status_code == 200  # invalidating one token leaves the others alone
    # invalidating an unknown or malformed ID is an error
    p = n1.cli("token", "invalidate", gone.split(".")[0], "--data-dir", str(n1.data.root), check=False)
    assert p.returncode != 0 and "no token" in p.stderr
    p = n1.cli("token", "invalidate", "NOT-AN-ID", "--data-dir", str(n1.data.root), check=False)
    assert p.returncode != 0 and "not valid" in p.stderr


@pytest.mark.parametrize("value", ["not json", "[]", '{"id": "zzzzzz"}',
                                   '{"id": "zzzzzz", "role": "controller", "secretHash": 1, "created": "x"}',
                                   '{"id": "zzzzzz", "role": "controller", "secretHash": "00", '
                                   '"created": "2026-01-01T00:00:00+00:00", "expires": "tomorrow"}'])
def test_unreadable_token_record_is_refused_not_a_crash(n1: Node, value: str) -> None:
    """A record written by hand or corrupted: the join API says 401, `token list` still works."""
    assert n1.etcdctl("put", "/etcdward/tokens/zzzzzz", value).returncode == 0
    try:
        with api_client(n1, "zzzzzz.0000000000000000") as c:
            r = c.get("/v1beta1/ca")
        assert (r.status_code, r.text) == (401, "go away")
        assert "zzzzzz" not in {t["id"] for t in token_list(n1)}
    finally:
        n1.etcdctl("del", "/etcdward/tokens/zzzzzz")


@pytest.mark.parametrize("args, needle", [
    (["--role", "controller", "--expiry", "soon"], "--expiry"),
    (["--role", "controller", "--expiry", "-1h"], "--expiry"),
    (["--role", "controller", "--expiry", "1x"], "--expiry"),
    (["--role", "controller", "--expiry", ""], "--expiry"),
    (["--role", "controller", "--expiry", "99999999999999999999h"], "--expiry"),
    # anything that rounds to zero would have meant "never" (issue 8): only the literal 0 does
    (["--role", "controller", "--expiry", "0.0001ms"], "--expiry"),
    (["--role", "controller", "--expiry", "0m"], "--expiry"),
    (["--role", "controller", "--expiry", "0s"], "--expiry"),
    (["--role", "controller", "--expiry", "999ms"], "--expiry"),
    (["--role", "worker"], "--role"),
    (["--role", ""], "--role"),
    ([], "--role"),
])
def test_create_rejects_bad_arguments(n1: Node, args: list[str], needle: str) -> None:
    before = stored_ids(n1)
    p = create(n1, *args, check=False)
    assert p.returncode != 0
    assert needle in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stdout.strip() == ""
    assert stored_ids(n1) == before


def test_token_commands_explain_a_stopped_controller(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    tid = bearer_of(n1.token()).split(".")[0]
    assert n1.stop() == 0
    for args in (["create", "--role", "controller"], ["list"], ["invalidate", tid]):
        p = n1.cli("token", *args, "--data-dir", str(n1.data.root), check=False)
        assert p.returncode != 0 and "is the controller running" in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr and p.stdout == ""


# -- parsers (no etcd) ---------------------------------------------------------------------
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNITS))), min_size=1, max_size=4))
def test_parse_duration_sums_go_style_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    expected = sum(n * UNITS[u] for n, u in parts)
    assert parse_duration(text, minimum=0).total_seconds() == pytest.approx(expected)


@given(st.text(max_size=30))
@example("\u0663h")  # a non-ASCII digit
@example("1h ")
@example("99999999999999999999h")
@example("1e3s")
def test_parse_duration_accepts_only_durations(text: str) -> None:
    well_formed = re.fullmatch(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+|0", text.strip(), re.ASCII)
    try:
        d = parse_duration(text, zero_means="never")
    except ValueError as e:
        assert not well_formed or "maximum" in str(e) or "minimum" in str(e), text
        return
    assert well_formed, f"{text!r} was accepted as {d}"
    assert d >= dt.timedelta(seconds=1) or (text.strip() == "0" and d == dt.timedelta(0))
    dt.datetime.now(dt.timezone.utc) + d  # usable as an expiry, never an OverflowError


def _gz64(data: bytes) -> str:
    return base64.b64encode(gzip.compress(data)).decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=10), kids, max_size=3),
    max_leaves=10)


def _kubeconfig_like(draw: st.DrawFn) -> str:
    """Mostly well-formed kubeconfigs with one part replaced by junk."""
    def maybe(v: object) -> object:
        return draw(st.one_of(st.just(v), json_values))

    kc = {"current-context": maybe("k0s"),
          "clusters": maybe([{"name": maybe("k0s"), "cluster": maybe({
              "server": maybe("https://127.0.0.1:9443"),
              "certificate-authority-data": maybe(base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode())})}]),
          "contexts": maybe([{"name": maybe("k0s"), "context": maybe({"cluster": maybe("k0s"),
                                                                       "user": maybe("controller-bootstrap")})}]),
          "users": maybe([{"name": maybe("controller-bootstrap"),
                           "user": maybe({"token": maybe("abcdef.0123456789abcdef")})}])}
    return _gz64(yaml.safe_dump(kc).encode())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=200).map(lambda b: base64.b64encode(b"\x1f\x8b\x08\x00" + b).decode()),
    st.binary(max_size=200).map(_gz64),
    json_values.map(lambda v: _gz64(yaml.safe_dump(v).encode())),
    st.composite(_kubeconfig_like)(),
))
def test_decode_never_raises_anything_but_token_error(text: str) -> None:
    try:
        tok = tokens.decode(text)
    except tokens.TokenError:
        return
    assert re.fullmatch(TOKEN_BEARER_RE, tok.bearer)
    assert tok.server.startswith("https://")


@given(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       st.from_regex(TOKEN_BEARER_RE, fullmatch=True), st.binary(max_size=64))
def test_encode_decode_roundtrip(host: str, bearer: str, der: bytes) -> None:
    ca = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    tok = tokens.JoinToken(f"https://{host}", ca, bearer)
    text = tokens.encode(tok)
    assert "\n" not in text
    assert tokens.decode(text) == tok
    assert kubeconfig(text)["users"][0] == {"name": "controller-bootstrap", "user": {"token": bearer}}


def test_decode_rejects_wrong_user_type() -> None:
    good = tokens.encode(tokens.JoinToken("https://127.0.0.1:9443", b"-----BEGIN CERTIFICATE-----\n", "abcdef.0123456789abcdef"))
    kc = kubeconfig(good)
    kc["users"][0]["name"] = kc["contexts"][0]["context"]["user"] = "kubelet-bootstrap"
    with pytest.raises(tokens.TokenError, match="wrong token type"):
        tokens.decode(_gz64(yaml.safe_dump(kc).encode()))
