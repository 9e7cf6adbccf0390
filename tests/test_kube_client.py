"""The official Python `kubernetes` client (CustomObjectsApi, watch.Watch) against a controller,
authentication answers on the API listener, and the pure pieces (patches, selectors)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etcdward.kubeapi import patch as P
from etcdward.kubeapi import selectors
from etcdward.kubeapi.status import KubeError
from etcdward.records import new
from tests.cluster import Node, wait_for
from tests.join_helpers import bearer_of, shared_cluster
from tests.kube_helpers import GROUP_PATH, expired_client, foreign_client, https, write_kubeconfig
from tests.test_records_support import inject_duplicate

kubernetes = pytest.importorskip("kubernetes")
G, V, PLURAL = "etcd.etcdward.io", "v1beta1", "etcdmembers"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    for c in shared_cluster(tmp_path_factory, "kubeclient"):
        yield c.bootstrap("n1")


@pytest.fixture(scope="module")
def api(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Any:
    kc = write_kubeconfig(node, tmp_path_factory.mktemp("kc") / "kubeconfig", "--user", "py")
    client = kubernetes.config.new_client_from_config(config_file=str(kc))
    return kubernetes.client.CustomObjectsApi(client)


def test_list_get_patch_delete(node: Node, api: Any) -> None:
    items = api.list_cluster_custom_object(G, V, PLURAL)["items"]
    assert [i["metadata"]["name"] for i in items] == ["n1"]
    one = api.get_cluster_custom_object(G, V, PLURAL, "n1")
    assert one["status"]["peerAddress"] == node.address
    patched = api.patch_cluster_custom_object(G, V, PLURAL, "n1", {"metadata": {"annotations": {"a": "b"}}})
    assert patched["metadata"]["annotations"] == {"a": "b"}
    assert int(patched["metadata"]["resourceVersion"]) > int(one["metadata"]["resourceVersion"])
    again = api.patch_cluster_custom_object(G, V, PLURAL, "n1", {"metadata": {"annotations": {"a": "b"}}})
    assert again["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    dup = inject_duplicate(node, node, "deadbeef00000002")
    gone = api.delete_cluster_custom_object(G, V, PLURAL, dup)
    assert gone["metadata"]["name"] == dup
    with pytest.raises(kubernetes.client.ApiException) as e:
        api.get_cluster_custom_object(G, V, PLURAL, dup)
    assert e.value.status == 404


def test_watch_stream_sees_added_modified_deleted(node: Node, api: Any) -> None:
    seen: list[tuple[str, str]] = []
    w = kubernetes.watch.Watch()

    def run() -> None:
        for ev in w.stream(api.list_cluster_custom_object, G, V, PLURAL, timeout_seconds=30):
            seen.append((ev["type"], ev["object"]["metadata"]["name"]))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: ("ADDED", "n1") in seen, 10, "initial ADDED")
    dup = inject_duplicate(node, node, "deadbeef00000003")
    wait_for(lambda: ("ADDED", dup) in seen, 5, "ADDED of the new record")
    api.patch_cluster_custom_object(G, V, PLURAL, dup, {"metadata": {"labels": {"x": "y"}}})
    wait_for(lambda: ("MODIFIED", dup) in seen, 5, "MODIFIED")
    api.delete_cluster_custom_object(G, V, PLURAL, dup)
    t.join(10)
    assert ("DELETED", dup) in seen, seen


def test_authentication_and_status_subresource(node: Node, tmp_path: Path) -> None:
    refused = {"no certificate": https(node, None, tmp_path),
               "another CA": https(node, foreign_client(), tmp_path / "f"),
               "expired": https(node, expired_client(node), tmp_path / "e"),
               "join token": https(node, None, tmp_path, Authorization=f"Bearer {bearer_of(node.token())}")}
    for what, client in refused.items():
        with client:
            r = client.get(GROUP_PATH)
        assert r.status_code == 401, (what, r.text)
        assert r.json()["kind"] == "Status" and r.json()["reason"] == "Unauthorized", what
    # the join API still answers a join client without a certificate
    with https(node, None, tmp_path, Authorization=f"Bearer {bearer_of(node.token())}") as client:
        assert client.get("/v1beta1/ca").status_code == 200
    kc = write_kubeconfig(node, tmp_path / "kc")
    api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(config_file=str(kc)))
    with pytest.raises(kubernetes.client.ApiException) as e:
        api.patch_cluster_custom_object_status(G, V, PLURAL, "n1", {"status": {"message": "x"}})
    assert e.value.status == 403


def test_watch_from_a_compacted_revision_is_410(node: Node, tmp_path: Path) -> None:
    rev = int(node.etcdctl("endpoint", "status", "-w", "json").stdout.split('"revision":')[1].split(",")[0])
    assert node.etcdctl("compact", str(rev)).returncode == 0
    kc = write_kubeconfig(node, tmp_path / "kc")
    api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(config_file=str(kc)))
    resp = api.list_cluster_custom_object(G, V, PLURAL, watch=True, resource_version="1", timeout_seconds=5,
                                          _preload_content=False)
    line = resp.readline().decode()
    assert '"type":"ERROR"' in line and '"code":410' in line and '"reason":"Expired"' in line, line


def test_merge_and_json_patch() -> None:
    doc = {"spec": {"leave": False}, "metadata": {"labels": {"a": "1"}}}
    assert P.merge_patch(doc, {"metadata": {"labels": {"a": None, "b": "2"}}}) == \
        {"spec": {"leave": False}, "metadata": {"labels": {"b": "2"}}}
    ops = [{"op": "replace", "path": "/spec/leave", "value": True},
           {"op": "add", "path": "/metadata/labels/c~1d", "value": "3"}, {"op": "test", "path": "/spec/leave",
                                                                          "value": True}]
    assert P.json_patch(doc, ops) == {"spec": {"leave": True}, "metadata": {"labels": {"a": "1", "c/d": "3"}}}
    assert doc["spec"]["leave"] is False  # the input is not changed
    for bad in ({"op": "remove", "path": "/nope"}, {"op": "frob", "path": "/spec"}, {"op": "add", "path": "x"}):
        with pytest.raises(P.PatchError):
            P.json_patch(doc, [bad])


def test_selectors() -> None:
    a = new("a", "10.0.0.1", "1").__class__(name="a", labels=(("tier", "x"),))
    b = new("b", "10.0.0.2", "2")
    sel = selectors.parse("tier in (x,y),!gone", "metadata.name!=b")
    assert sel(a) and not sel(b)
    assert selectors.parse("tier", None)(a) and not selectors.parse("tier", None)(b)
    for bad_label, bad_field in (("a b c", None), (None, "status.memberID=1"), ("!a=b", None)):
        with pytest.raises(KubeError) as e:
            selectors.parse(bad_label, bad_field)
        assert e.value.code == 400


