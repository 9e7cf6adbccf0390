"""Helpers shared by the join-protocol tests (tokens, join API, join client, crash safety).

Everything here talks to real processes: the token is decoded with base64 + gzip + yaml only
(an oracle independent of etcdward.tokens), the join API with httpx trusting the cluster CA,
etcd with etcdctl.
"""

from __future__ import annotations

import base64
import gzip
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import prereqs
from tests.cluster import Cluster, Node, next_address, wait_for

TOKEN_BEARER_RE = r"[a-z0-9]{6}\.[a-z0-9]{16}"


def shared_cluster(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Cluster]:
    """Body of a module-scoped cluster fixture (the `cluster` fixture is per test)."""
    prereqs.require("etcd")  # module-scoped: the per-test `needs` marker comes too late
    c = Cluster(tmp_path_factory.mktemp(name))
    try:
        yield c
    finally:
        c.teardown()


# -- token oracle -------------------------------------------------------------------------
def kubeconfig(token: str) -> dict[str, Any]:
    """The token as k0s reads it: base64 -> gunzip -> kubeconfig YAML."""
    kc = yaml.safe_load(gzip.decompress(base64.b64decode(token.strip(), validate=True)))
    assert isinstance(kc, dict), kc
    return kc


def bearer_of(token: str) -> str:
    return kubeconfig(token)["users"][0]["user"]["token"]


def server_of(token: str) -> str:
    return kubeconfig(token)["clusters"][0]["cluster"]["server"]


def make_token(server: str, ca_pem: bytes, bearer: str, user: str = "controller-bootstrap") -> str:
    """A k0s-shaped token built by hand (for wrong-type / hand-crafted tokens)."""
    kc = {"apiVersion": "v1", "kind": "Config", "current-context": "k0s",
          "clusters": [{"name": "k0s", "cluster": {"server": server,
                                                     "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
          "contexts": [{"name": "k0s", "context": {"cluster": "k0s", "user": user}}],
          "users": [{"name": user, "user": {"token": bearer}}]}
    return base64.b64encode(gzip.compress(yaml.safe_dump(kc).encode())).decode()


# -- join API -----------------------------------------------------------------------------
def api_client(node: Node | None = None, bearer: str | None = None, *, token: str | None = None,
               timeout: float = 40.0) -> httpx.Client:
    """An httpx client for a node's join API trusting the cluster CA. With `token`, the URL
    and CA come from the token alone, as a k0s joiner would use them."""
    if token is not None:
        kc = kubeconfig(token)
        cluster = kc["clusters"][0]["cluster"]
        base_url = cluster["server"]
        ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        bearer = bearer if bearer is not None else kc["users"][0]["user"]["token"]
    else:
        assert node is not None
        base_url = f"https://{node.address}:9443"
        ctx = ssl.create_default_context(cafile=str(node.data.ca_crt))
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return httpx.Client(base_url=base_url, verify=ctx, trust_env=False, headers=headers, timeout=timeout)


def phantom_peer_url() -> str:
    """A peer URL on a fresh loopback address nobody listens on (a learner that never starts)."""
    return f"https://{next_address()}:2380"


# -- etcd as etcdctl sees it -------------------------------------------------------------------
def etcd_members(node: Node) -> list[dict[str, Any]]:
    """`etcdctl member list -w json` members, IDs as hex, isLearner always present."""
    p = node.etcdctl("member", "list", "-w", "json")
    assert p.returncode == 0, p.stderr
    out = []
    for m in json.loads(p.stdout).get("members", []):
        out.append({"id": format(int(m["ID"]), "x"), "name": m.get("name", ""),
                    "peerURLs": tuple(m.get("peerURLs", ())), "isLearner": bool(m.get("isLearner", False))})
    return sorted(out, key=lambda m: m["id"])


def remove_member(node: Node, member_id_hex: str) -> None:
    p = node.etcdctl("member", "remove", member_id_hex)
    assert p.returncode == 0 or "not found" in p.stderr, p.stderr


def remove_members_except(node: Node, keep: list[dict[str, Any]]) -> None:
    """Put the member list back to `keep` (removes learners a test added)."""
    ids = {m["id"] for m in keep}
    for m in etcd_members(node):
        if m["id"] not in ids:
            remove_member(node, m["id"])


def cluster_ids(nodes: list[Node]) -> set[int]:
    return {n.status().cluster_id for n in nodes}


def wait_dead(node: Node, timeout: float = 30.0) -> int:
    """Wait for the controller to exit; return its exit code (-9 for a crash point)."""
    rc = node.wait_exit(timeout)
    wait_for(lambda: node.etcd_pid() is None, 10, f"{node.name}'s etcd gone", node=node)
    return rc


__all__ = ["Cluster", "Node", "wait_for", "Path"]
