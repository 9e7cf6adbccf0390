"""The joining side (`etcdward controller TOKEN`) against a real cluster: unusable tokens fail
before anything is written, refusals by the join API (401, 409) are fatal with a clear
message, an unreachable join API is retried until --join-timeout, and a joined node restarts
with its token file gone (k0sctl #256)."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from tests.cluster import Cluster, Node, wait_for
from tests.join_helpers import (
    api_client, bearer_of, etcd_members, make_token, phantom_peer_url, remove_member, server_of, shared_cluster,
)

MESSAGE_TAIL = 4000


@pytest.fixture(scope="module")
def ccluster(tmp_path_factory: pytest.TempPathFactory):
    yield from shared_cluster(tmp_path_factory, "joinclient")


@pytest.fixture(scope="module")
def n1(ccluster: Cluster) -> Node:
    return ccluster.bootstrap("n1")


@pytest.fixture(scope="module")
def token(n1: Node) -> str:
    return n1.token()


def last_run(node: Node) -> str:
    return node.log().split("=== start")[-1][-MESSAGE_TAIL:]


def run_to_exit(node: Node, *start_args, timeout: float = 30.0, **start_kw) -> tuple[int, str]:
    node.start(*start_args, **start_kw)
    rc = node.wait_exit(timeout)
    return rc, last_run(node)


BAD_TOKENS = {
    "garbage": lambda srv, ca, b: "this-is-not-a-token",
    "base64-not-gzip": lambda srv, ca, b: base64.b64encode(b"hello world").decode(),
    "gzip-not-kubeconfig": lambda srv, ca, b: make_token(srv, ca, b)[:40],
    "wrong-user-type": lambda srv, ca, b: make_token(srv, ca, b, user="kubelet-bootstrap"),
    "bad-bearer": lambda srv, ca, b: make_token(srv, ca, "NOT-A-BEARER"),
    "ca-not-pem": lambda srv, ca, b: make_token(srv, b"not a certificate", b),
    "http-server": lambda srv, ca, b: make_token(srv.replace("https://", "http://"), ca, b),
}
EXPECTED = {"wrong-user-type": "wrong token type"}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_token_exits_before_touching_the_data_dir(ccluster: Cluster, n1: Node, token: str, kind: str) -> None:
    tok = BAD_TOKENS[kind](server_of(token), n1.data.ca_crt.read_bytes(), bearer_of(token))
    before = etcd_members(n1)
    node = ccluster.node(f"bad-{kind}")
    rc, out = run_to_exit(node, tok, timeout=20)
    assert rc != 0, out
    assert "token" in out and EXPECTED.get(kind, "not valid") in out, out
    assert "Traceback" not in out, out
    leftovers = sorted(str(p.relative_to(node.data.root)) for p in node.data.root.rglob("*")) \
        if node.data.root.exists() else []
    assert leftovers == [], f"a bad token left {leftovers} in the data dir"
    assert etcd_members(n1) == before


def test_invalidated_token_is_fatal(ccluster: Cluster, n1: Node) -> None:
    tok = n1.token()
    n1.cli("token", "invalidate", bearer_of(tok).split(".")[0], "--data-dir", str(n1.data.root))
    before = etcd_members(n1)
    node = ccluster.node("refused")
    start = time.monotonic()
    rc, out = run_to_exit(node, tok, timeout=30)
    assert rc != 0 and time.monotonic() - start < 20, out  # 401 is not retried
    assert "401" in out and "token create" in out, out
    assert not node.data.etcd.exists()
    assert etcd_members(n1) == before
    # issue 8: a later start without a token says what happened, not "may already have a learner"
    assert "refused" in json.loads(node.data.join_file.read_text())
    rc, out = run_to_exit(node, timeout=30)
    assert rc == 1, out
    assert "was refused (the join API refused the token (401" in out and "no learner was added" in out, out
    assert "may already have a learner" not in out, out
    assert not node.data.etcd.exists()


def test_name_conflict_is_fatal(ccluster: Cluster, n1: Node, token: str) -> None:
    """Another host configured with the name of a voter: 409, explained, no member added."""
    before = etcd_members(n1)
    node = ccluster.node("n1-twin")
    node.extra_config = {"spec": {"storage": {"etcd": {"extraArgs": {"name": "n1"}}}}}
    rc, out = run_to_exit(node, token, timeout=30)
    assert rc != 0, out
    assert "409" in out and "n1" in out and "remove" in out, out
    assert not node.data.etcd_db.exists()
    assert etcd_members(n1) == before


def test_unreachable_join_api_is_retried_until_join_timeout(ccluster: Cluster, n1: Node, token: str) -> None:
    dead = make_token("https://127.78.255.254:9443", n1.data.ca_crt.read_bytes(), bearer_of(token))
    node = ccluster.node("lonely")
    start = time.monotonic()
    rc, out = run_to_exit(node, dead, "--join-timeout", "4", timeout=30)
    took = time.monotonic() - start
    assert rc != 0, out
    assert "gave up" in out and "127.78.255.254" in out, out
    assert 4 <= took < 15, took  # the full --join-timeout, then one last attempt
    assert out.count("retrying in") >= 2, out  # it did retry, with backoff


@pytest.fixture(scope="module")
def n2(ccluster: Cluster, n1: Node, token: str) -> Node:
    """A second voter, joined with --token-file."""
    token_file = ccluster.root / "n2.token"
    token_file.write_text(token)
    n2 = ccluster.node("n2")
    n2.start(token_file=token_file)
    ccluster.wait_voters(n1, {"n1", "n2"}, 60)
    n2.wait_ready(30)
    return n2


def test_joined_node_restarts_after_its_token_file_is_deleted(ccluster: Cluster, n1: Node, n2: Node) -> None:
    assert n2.stop() == 0
    token_file = ccluster.root / "n2.token"
    token_file.unlink()
    n2.start(token_file=token_file)  # the unit file still says --token-file
    n2.wait_ready(30)
    assert n2.alive()
    assert sorted(m["name"] for m in etcd_members(n1)) == ["n1", "n2"]
    assert len({n1.status().cluster_id, n2.status().cluster_id}) == 1


def test_every_voter_serves_the_same_join(n1: Node, n2: Node, token: str) -> None:
    """The token is checked and the join answered by whichever voter gets the request: the
    same peer URL asked on n1 and on n2 gets one learner."""
    def api_up() -> bool:
        try:
            with api_client(n2) as c:
                return c.get("/livez").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(api_up, 30, "n2 join API", node=n2)
    before = etcd_members(n1)
    peer = phantom_peer_url()
    answers = []
    for node in (n2, n1, n2):
        with api_client(node, bearer_of(token)) as c:
            r = c.post("/v1beta1/etcd/members", json={"node": "roaming", "peerAddress": peer})
        assert r.status_code == 200, (node.name, r.text)
        answers.append(r.json()["memberID"])
    assert len(set(answers)) == 1
    try:
        assert len(etcd_members(n1)) == len(before) + 1
    finally:
        remove_member(n1, answers[0])
