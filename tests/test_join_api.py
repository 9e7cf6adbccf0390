"""The HTTPS join API (issue 3) against a real controller and real etcd: k0s wire format,
learner adds that are idempotent by peer URL, conflicts, auth, input validation, limits,
a phantom learner, and a hypothesis fuzz driven by the published OpenAPI schema.

Every rejected request is followed by a look at `etcdctl member list`: it must be unchanged.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import socket
import ssl
import time
import warnings
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cluster import Cluster, Node, wait_for
from tests.join_helpers import (
    api_client, bearer_of, etcd_members, phantom_peer_url, remove_member, remove_members_except,
    shared_cluster,
)

MEMBERS = "/v1beta1/etcd/members"


@pytest.fixture(scope="module")
def acluster(tmp_path_factory: pytest.TempPathFactory):
    yield from shared_cluster(tmp_path_factory, "joinapi")


@pytest.fixture(scope="module")
def n1(acluster: Cluster) -> Node:
    return acluster.bootstrap("n1")


@pytest.fixture(scope="module")
def token(n1: Node) -> str:
    return n1.token("0")


@pytest.fixture
def api(n1: Node, token: str):
    with api_client(n1, bearer_of(token)) as c:
        yield c


@pytest.fixture
def unchanged(n1: Node):
    """The member list before the test; the test asserts against it, and extra learners are
    removed afterwards so that tests stay independent."""
    before = etcd_members(n1)
    yield before
    remove_members_except(n1, before)


def tls_version(node: Node, version: ssl.TLSVersion) -> str:
    """Handshake with the join API at exactly this TLS version; the negotiated version."""
    ctx = ssl.create_default_context(cafile=str(node.data.ca_crt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with socket.create_connection((node.address, 9443), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=node.address) as tls:
        return tls.version() or ""


# Not a missing install: an OpenSSL built without TLS 1.1 cannot make the client that probes for it.
@pytest.mark.allow_skip("this OpenSSL cannot offer TLS 1.1")
def test_tls_is_signed_by_cluster_ca_and_at_least_1_2(n1: Node) -> None:
    with api_client(n1) as c:
        assert c.get("/v1beta1/ca").status_code == 401  # reachable, verified against pki/ca.crt (IP SAN)
    assert tls_version(n1, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the cluster CA
        httpx.get(f"https://{n1.address}:9443/v1beta1/ca", verify=ssl.create_default_context(), trust_env=False)
    try:
        got = tls_version(n1, ssl.TLSVersion.TLSv1_1)
    except ssl.SSLError as e:
        if "NO_PROTOCOLS_AVAILABLE" in str(e):
            pytest.skip("this OpenSSL cannot offer TLS 1.1")
    else:
        pytest.fail(f"the join API accepted {got}")


def test_responses_carry_a_current_date_header(api: httpx.Client) -> None:
    """The server does not tick (api._Server): the Date header is brought up to date when a
    request arrives, also on a kept-alive connection."""
    from email.utils import parsedate_to_datetime

    for _ in range(2):
        r = api.get("/v1beta1/ca")
        assert abs(parsedate_to_datetime(r.headers["date"]).timestamp() - time.time()) < 2.5, r.headers
        time.sleep(1.5)


def test_get_ca_is_k0s_shaped(n1: Node, api: httpx.Client) -> None:
    r = api.get("/v1beta1/ca")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"cert", "key"}
    assert base64.b64decode(body["cert"]) == n1.data.ca_crt.read_bytes()
    assert base64.b64decode(body["key"]) == n1.data.ca_key.read_bytes()


def test_k0s_shaped_join_adds_one_learner_idempotently(n1: Node, token: str, unchanged: list) -> None:
    """Decode the token as a kubeconfig and join with a k0s-shaped request, twice."""
    peer = phantom_peer_url()
    request = {"node": "x1", "peerAddress": peer}
    with api_client(token=token) as c:  # URL and CA from the token only
        assert c.base_url.host == n1.address
        r1 = c.post(MEMBERS, json=request)
        assert r1.status_code == 200, r1.text
        body = r1.json()
        etcd_ca, etcd_key = n1.data.etcd_cert("ca")
        assert base64.b64decode(body["ca"]["cert"]) == etcd_ca.read_bytes()
        assert base64.b64decode(body["ca"]["key"]) == etcd_key.read_bytes()
        assert f"x1={peer}" in body["initialCluster"]
        assert f"n1={n1.peer_url}" in body["initialCluster"]
        assert len(body["initialCluster"]) == len(unchanged) + 1
        assert body["clusterID"] == format(n1.status().cluster_id, "x")
        after = etcd_members(n1)
        new = [m for m in after if peer in m["peerURLs"]]
        assert len(new) == 1 and new[0]["isLearner"] and new[0]["id"] == body["memberID"]
        assert len(after) == len(unchanged) + 1

        # the same request again, and with a trailing slash: the same member, no second add
        for again in (request, {"node": "x1", "peerAddress": peer + "/"}):
            r2 = c.post(MEMBERS, json=again)
            assert r2.status_code == 200, r2.text
            assert r2.json()["memberID"] == body["memberID"]
        assert etcd_members(n1) == after

        # the same name with another peer URL while that learner waits to start: conflict
        r3 = c.post(MEMBERS, json={"node": "x1", "peerAddress": phantom_peer_url()})
        assert r3.status_code == 409, r3.text
        assert body["memberID"] in r3.text and "remove" in r3.text
        assert etcd_members(n1) == after
    remove_member(n1, body["memberID"])


def test_conflicts_with_voters_are_409(n1: Node, api: httpx.Client, unchanged: list) -> None:
    # a started voter already has this peer URL
    r = api.post(MEMBERS, json={"node": "other", "peerAddress": n1.peer_url})
    assert r.status_code == 409, r.text
    assert "n1" in r.text and "remove" in r.text and "reset" in r.text
    # a member with this name exists with another peer URL
    r = api.post(MEMBERS, json={"node": "n1", "peerAddress": phantom_peer_url()})
    assert r.status_code == 409, r.text
    assert n1.peer_url in r.text and "--leave" in r.text
    assert etcd_members(n1) == unchanged


BAD_AUTH = [
    None,
    "Bearer",
    "RIGHT-TOKEN-OTHER-SCHEME",
    "Bearer garbage",
    "Basic YWJjOmRlZg==",
    "Bearer abcdef.0123456789abcdef",  # well-formed, unknown id
    "WRONG-SECRET",  # right id, wrong secret (filled in below)
    "UPPER",  # right token in upper case
]


@pytest.mark.parametrize("auth", BAD_AUTH)
def test_bad_credentials_get_401_go_away(n1: Node, token: str, auth: str | None, unchanged: list) -> None:
    bearer = bearer_of(token)
    if auth == "WRONG-SECRET":
        auth = f"Bearer {bearer.split('.')[0]}.{'0' * 16 if bearer[7:] != '0' * 16 else '1' * 16}"
    elif auth == "RIGHT-TOKEN-OTHER-SCHEME":
        auth = f"Token {bearer}"
    elif auth == "UPPER":
        auth = f"Bearer {bearer.upper()}"
    headers = {"Authorization": auth} if auth is not None else {}
    with api_client(n1) as c:
        for resp in (c.get("/v1beta1/ca", headers=headers),
                     c.post(MEMBERS, json={"node": "x2", "peerAddress": phantom_peer_url()}, headers=headers)):
            assert resp.status_code == 401, resp.text
            assert resp.text == "go away"
    assert etcd_members(n1) == unchanged


OK_PEER = "https://127.78.0.1:2380"
BAD_BODIES: list[tuple[Any, str]] = [
    (b"{", "body"),
    (b"", "body"),
    (b"\xff\xfe", "body"),
    (b"[" * 60000, "body"),  # deeper than the JSON parser's stack
    ([], "body"),
    ("node", "body"),
    ({}, "node"),
    ({"peerAddress": OK_PEER}, "node"),
    ({"node": "x3"}, "peerAddress"),
    ({"node": "", "peerAddress": OK_PEER}, "node"),
    ({"node": 7, "peerAddress": OK_PEER}, "node"),
    ({"node": "Upper", "peerAddress": OK_PEER}, "node"),
    ({"node": "under_score", "peerAddress": OK_PEER}, "node"),
    ({"node": "-x", "peerAddress": OK_PEER}, "node"),
    ({"node": "a..b", "peerAddress": OK_PEER}, "node"),
    ({"node": "a" * 64, "peerAddress": OK_PEER}, "node"),
    ({"node": "x3", "peerAddress": None}, "peerAddress"),
    ({"node": "x3", "peerAddress": ["https://127.78.0.1:2380"]}, "peerAddress"),
    ({"node": "x3", "peerAddress": "127.78.0.1:2380"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "http://127.78.0.1:2380"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://127.78.0.1"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://:2380"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://127.78.0.1:0"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://127.78.0.1:65536"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://127.78.0.1:2380/path"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://127.78.0.1:2380?q=1"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://127.78.0.1:2380#"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://u:p@127.78.0.1:2380"}, "peerAddress"),
    ({"node": "x3", "peerAddress": " https://127.78.0.1:2380"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://127.78.0.1:23\n80"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://127.78.0.1:2380\t"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://host_name:2380"}, "peerAddress"),
    ({"node": "x3", "peerAddress": "https://[127.78.0.1]:2380"}, "peerAddress"),
]


@pytest.mark.parametrize("body, field", BAD_BODIES, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD_BODIES)])
def test_bad_request_is_400_naming_the_field(n1: Node, api: httpx.Client, body: Any, field: str,
                                             unchanged: list) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = api.post(MEMBERS, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.text.startswith(f"{field}:"), r.text
    assert etcd_members(n1) == unchanged


def test_size_method_and_path_limits(n1: Node, api: httpx.Client, unchanged: list) -> None:
    big = json.dumps({"node": "Bad", "peerAddress": OK_PEER, "pad": "x" * (64 * 1024)}).encode()
    assert api.post(MEMBERS, content=big).status_code == 413
    with api_client(n1) as anon:  # the size is checked before the token
        assert anon.post(MEMBERS, content=big).status_code == 413

    def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(80):
            yield b" " * 1024

    assert api.post(MEMBERS, content=chunks()).status_code == 413
    # exactly 64 KiB is allowed (answered 400 here only because the name is invalid)
    base = json.dumps({"node": "Bad", "peerAddress": OK_PEER, "pad": ""}).encode()
    just = base[:-2] + b"x" * (64 * 1024 - len(base)) + b'"}'
    assert len(just) == 64 * 1024
    r = api.post(MEMBERS, content=just)
    assert r.status_code == 400 and r.text.startswith("node:"), r.text

    for method, path in [("GET", MEMBERS), ("PUT", MEMBERS), ("DELETE", MEMBERS), ("POST", "/v1beta1/ca"),
                         ("DELETE", "/v1beta1/ca")]:
        assert api.request(method, path).status_code == 405, (method, path)
    with api_client(n1) as anon:  # the method is checked before the token
        assert anon.get(MEMBERS).status_code == 405
    for path in ["/", "/v1beta1", "/v1beta1/etcd", "/v1beta1/etcd/members/x", "/v1/etcd/members", "/v1beta1/cax"]:
        assert api.get(path).status_code == 404, path
        assert api.post(path, json={}).status_code == 404, path
    assert etcd_members(n1) == unchanged


def test_phantom_learner_keeps_quorum_and_is_removed(cluster: Cluster) -> None:
    """Like k0s's etcdlearner inttest: a learner whose peer URL nobody serves. Writes keep
    working, a real joiner queues behind it, and the reconciler removes it after
    learnerStartTimeout so that the real join completes."""
    fast = {"spec": {"reconciler": {"learnerStartTimeout": 5}}}
    n1 = cluster.bootstrap("n1", extra_config=fast)
    tok = n1.token()
    peer = phantom_peer_url()
    with api_client(token=tok) as c:
        r = c.post(MEMBERS, json={"node": "phantom", "peerAddress": peer})
    assert r.status_code == 200, r.text
    added = time.monotonic()
    assert any(m["isLearner"] and peer in m["peerURLs"] for m in etcd_members(n1))
    p = n1.etcdctl("put", "/phantom-test", "still-writable")
    assert p.returncode == 0, p.stderr
    assert n1.etcdctl("get", "--print-value-only", "/phantom-test").stdout.strip() == "still-writable"

    n2 = cluster.node("n2", extra_config=fast)
    n2.start(tok)
    wait_for(lambda: all(peer not in m["peerURLs"] for m in etcd_members(n1)), 30, "phantom removed", node=n1)
    assert time.monotonic() - added >= 4.5, "removed before learnerStartTimeout"
    cluster.wait_voters(n1, {"n1", "n2"}, 60)
    n2.wait_ready(30)
    assert any("removed learner phantom" in line for line in n1.log().splitlines()), n1.log()[-2000:]


# -- fuzz ------------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=12)


def request_bodies(schema: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """JoinRequest bodies from the published schema: schema-valid ones, ones with a field
    missing, mistyped or near-valid, plus arbitrary JSON and bytes."""
    props = schema["properties"]
    node_ok = st.from_regex(props["node"]["pattern"], fullmatch=True).filter(
        lambda s: len(s) <= props["node"].get("maxLength", 253))
    host = st.one_of(
        st.builds(lambda b, c: f"127.78.{b}.{c}", st.integers(0, 255), st.integers(1, 254)),
        st.builds(lambda lbl: f"{lbl}.invalid", st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)),
        st.just("[fd00::1]"))
    peer_ok = st.builds(lambda h, p, slash: f"https://{h}:{p}{slash}", host, st.integers(1, 65535),
                        st.sampled_from(["", "/"]))
    near = st.builds(lambda s, junk, pos: s[:pos] + junk + s[pos:], peer_ok,
                     st.text(st.characters(max_codepoint=0x7f), min_size=1, max_size=2), st.integers(0, 30))
    field_values = {"node": st.one_of(node_ok, st.text(max_size=70), JSON),
                    "peerAddress": st.one_of(peer_ok, near, st.from_regex(props["peerAddress"]["pattern"],
                                                                          fullmatch=True), st.text(max_size=40), JSON)}
    valid = st.fixed_dictionaries({"node": st.one_of(node_ok, st.just("n1")), "peerAddress": peer_ok},
                                  optional={"extra": JSON})
    mixed = st.fixed_dictionaries(
        {}, optional={k: field_values.get(k, JSON) for k in props} | {"extra": JSON})
    return st.one_of(valid, mixed, JSON, st.binary(max_size=100)).map(
        lambda v: v if isinstance(v, bytes) else json.dumps(v).encode())


def host_port_of(url: str) -> tuple[str, int]:
    m = re.fullmatch(r"https://(.+):([0-9]+)/?", url, re.IGNORECASE)
    assert m, url
    host = m.group(1).strip("[]").lower()
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host, int(m.group(2))


@pytest.fixture(scope="module")
def schema(n1: Node) -> dict[str, Any]:
    with api_client(n1) as c:
        doc = c.get("/openapi.json").json()
    assert doc["paths"][MEMBERS]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"] \
        == "#/components/schemas/JoinRequest"
    return doc


def test_fuzz_join_requests_from_openapi_schema(n1: Node, token: str, schema: dict[str, Any],
                                                unchanged: list) -> None:
    """The server never answers 5xx (except 503 + Retry-After), a non-200 answer never changes
    the member list, and a 200 adds exactly the learner that was asked for."""
    join_schema = schema["components"]["schemas"]["JoinRequest"]
    documented = {int(c) for c in schema["paths"][MEMBERS]["post"]["responses"]}
    response_schema = schema["components"]["schemas"]["JoinResponse"]
    bearer = bearer_of(token)
    client = api_client(n1, timeout=60)
    seen: dict[int, int] = {}

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(body=request_bodies(join_schema), authorized=st.sampled_from([True, True, True, False]))
    def check(body: bytes, authorized: bool) -> None:
        headers = {"Content-Type": "application/json"}
        if authorized:
            headers["Authorization"] = f"Bearer {bearer}"
        r = client.post(MEMBERS, content=body, headers=headers)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        if r.status_code == 503:
            print("503:", body[:200], r.text[:300])
        assert r.status_code in documented, (r.status_code, r.text)
        if r.status_code >= 500:
            assert r.status_code == 503 and r.headers.get("retry-after", "").isdigit(), (r.status_code, r.text)
        after = etcd_members(n1)
        if r.status_code != 200:
            assert after == unchanged, (body, r.status_code, r.text)
            return
        assert authorized
        ans = r.json()
        assert set(response_schema["required"]) <= set(ans)
        req = json.loads(body)
        new = [m for m in after if m not in unchanged]
        assert len(new) == 1 and new[0]["isLearner"] and new[0]["id"] == ans["memberID"], (req, after)
        assert host_port_of(new[0]["peerURLs"][0]) == host_port_of(req["peerAddress"]), (req, new)
        assert f"{req['node']}={new[0]['peerURLs'][0]}" in ans["initialCluster"]
        remove_member(n1, ans["memberID"])

    try:
        check()
    finally:
        client.close()
    print("fuzz answers:", seen)
    assert seen.get(400, 0) > 0 and seen.get(401, 0) > 0, seen


def test_openapi_declares_the_k0s_shapes(schema: dict[str, Any]) -> None:
    comps = schema["components"]["schemas"]
    assert set(comps["JoinRequest"]["required"]) == {"node", "peerAddress"}
    assert set(comps["JoinResponse"]["required"]) == {"ca", "initialCluster"}
    assert set(comps["KeyPair"]["required"]) == {"cert", "key"}
    assert re.fullmatch(comps["JoinRequest"]["properties"]["node"]["pattern"], "n1.example")
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_repeated_join_records_the_learners_progress(n1: Node, token: str, unchanged: list) -> None:
    """A learner cannot write to etcd: its joiner sends its applied index with each repeat, and
    the serving voter records it beside its own; `etcdward status` shows the ratio."""
    peer = phantom_peer_url()
    with api_client(token=token) as c:
        member_id = c.post(MEMBERS, json={"node": "x2", "peerAddress": peer}).json()["memberID"]
        claim = {"X-Etcdward-Learner-ID": member_id}
        bad = c.post(MEMBERS, json={"node": "x2", "peerAddress": peer}, headers={**claim,
                                                                                "X-Etcdward-Learner-Applied": "-1"})
        assert bad.status_code == 400 and bad.text.startswith("X-Etcdward-Learner-Applied: "), bad.text
        for _ in range(2):
            r = c.post(MEMBERS, json={"node": "x2", "peerAddress": peer}, headers={**claim,
                                                                                  "X-Etcdward-Learner-Applied": "3"})
            assert r.status_code == 200, r.text
    record = json.loads(n1.etcdctl("get", f"/etcdward/joins/{member_id}", "--print-value-only").stdout)
    assert record["learnerApplied"] == 3 and record["clusterApplied"] > 3 and record["heardAt"] > 0
    assert record["stalled"] == 1 and record["seen"] >= 2  # behind and not moving since the last repeat
    out = json.loads(n1.cli("status", "-o", "json", "--data-dir", str(n1.data.root), check=False).stdout)
    row = next(m for m in out["members"] if m["id"] == member_id)
    assert row["role"] == "learner" and row["name"] == "x2" and row["raftAppliedIndex"] == 3
    assert row["progress"] == round(100 * 3 / record["clusterApplied"], 1)
    remove_member(n1, member_id)
