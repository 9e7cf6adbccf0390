"""The real, unmodified kubectl against a 3-controller cluster: get (Table columns, -o yaml|json,
short name), explain, patch (merge, no change, leave), delete --wait of a hand-made record (the
seed's mend), watch, and every error as kubectl prints it."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster import Node, wait_for
from tests.join_helpers import shared_cluster
from tests.kube_helpers import Kubectl, b64, expired_client, foreign_client, kubeconfig_with, write_kubeconfig
from tests.test_leave import three
from tests.test_records_support import inject_duplicate, record_is, recs

COLUMNS = ["NAME", "PEER", "ADDRESS", "MEMBER", "ID", "JOINED", "RECONCILE", "STATUS", "AGE"]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    for c in shared_cluster(tmp_path_factory, "kubectl"):
        yield three(c)


@pytest.fixture(scope="module")
def kubectl(nodes: list[Node], tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("kubectl")
    return Kubectl(write_kubeconfig(nodes[0], tmp / "admin.kubeconfig"), tmp / "home")


def table(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    assert lines[0].split() == COLUMNS, lines[0]
    return {ln.split()[0]: ln.split() for ln in lines[1:]}


def test_get_on_every_voting_controller(nodes: list[Node], tmp_path: Path) -> None:
    ids = {m.name: m.hex_id for m in nodes[0].members()}
    for node in nodes:
        k = Kubectl(write_kubeconfig(node, tmp_path / f"{node.name}.kubeconfig"), tmp_path / f"home-{node.name}")
        assert k("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout == \
            f"https://{node.address}:9443"
        for kind in ("etcdmembers", "em", "etcdmember"):
            rows = table(k("get", kind).stdout)
            assert set(rows) == {"n1", "n2", "n3"}
            for n in nodes:
                assert rows[n.name][:4] == [n.name, n.address, ids[n.name], "True"]


def test_get_one_as_yaml_and_json(nodes: list[Node], kubectl: Kubectl) -> None:
    as_yaml = yaml.safe_load(kubectl("get", "etcdmember", "n2", "-o", "yaml").stdout)
    as_json = json.loads(kubectl("get", "etcdmember", "n2", "-o", "json").stdout)
    assert as_yaml == as_json
    rec = recs(nodes[0])["n2"]
    assert as_json["metadata"]["resourceVersion"] == str(rec.resource_version)
    assert as_json["metadata"]["uid"] == rec.uid and as_json["status"]["memberID"] == rec.member_id
    listed = json.loads(kubectl("get", "em", "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["n1", "n2", "n3"]


def test_explain(kubectl: Kubectl) -> None:
    """kubectl >= 1.27 explains from /openapi/v3, older ones (Debian 12's 1.20) from the
    protobuf /openapi/v2: both are served."""
    out = kubectl("explain", "etcdmember.spec").stdout
    assert "EtcdMember" in out and "leave\t<boolean>" in out and "quorum guard" in " ".join(out.split()), out
    labels = kubectl("explain", "em.metadata.labels").stdout
    assert "map[string]string" in labels, labels


def test_patch_labels_no_change_and_selectors(kubectl: Kubectl) -> None:
    p = ["patch", "etcdmember", "n1", "--type", "merge", "-p", '{"metadata":{"labels":{"tier":"a"}}}']
    assert kubectl(*p).stdout.strip() == "etcdmember.etcd.etcdward.io/n1 patched"
    assert kubectl(*p).stdout.strip() == "etcdmember.etcd.etcdward.io/n1 patched (no change)"
    assert set(table(kubectl("get", "em", "-l", "tier=a").stdout)) == {"n1"}
    assert set(table(kubectl("get", "em", "-l", "tier!=a").stdout)) == {"n2", "n3"}
    assert set(table(kubectl("get", "em", "--field-selector", "metadata.name=n3").stdout)) == {"n3"}
    jp = ["patch", "em", "n1", "--type", "json", "-p", '[{"op":"remove","path":"/metadata/labels/tier"}]']
    assert "patched" in kubectl(*jp).stdout
    status_only = ["patch", "em", "n1", "--type", "merge", "-p", '{"status":{"message":"hello"}}']
    assert "(no change)" in kubectl(*status_only).stdout  # status is not writable here: ignored


def test_errors_as_kubectl_prints_them(nodes: list[Node], kubectl: Kubectl, tmp_path: Path) -> None:
    def err(*args: str, input: str | None = None) -> str:
        p = kubectl(*args, check=False, input=input)
        assert p.returncode != 0, p.stdout
        return p.stderr.strip()

    assert err("get", "em", "nope") == 'Error from server (NotFound): etcdmembers.etcd.etcdward.io "nope" not found'
    assert err("delete", "em", "nope") == \
        'Error from server (NotFound): etcdmembers.etcd.etcdward.io "nope" not found'
    assert err("patch", "em", "n1", "--type", "merge", "-p", '{"spec":{"leave":"yes"}}') == \
        'The EtcdMember "n1" is invalid: spec.leave: Invalid value: "yes": must be a boolean'
    assert 'spec.color: field not declared in schema' in err("patch", "em", "n1", "--type", "merge", "-p",
                                                                '{"spec":{"color":"red"}}')
    smp = err("patch", "em", "n1", "-p", '{"spec":{"leave":true}}')
    assert "application/merge-patch+json" in smp and "application/json-patch+json" in smp, smp
    if kubectl.minor >= 24:  # --subresource is new in 1.24 (test_kube_client checks the 403 for all)
        assert 'cannot patch resource "etcdmembers/status"' in err(
            "patch", "em", "n1", "--subresource", "status", "--type", "merge", "-p", '{"status":{"message":"x"}}')
    obj = json.loads(kubectl("get", "em", "n2", "-o", "json").stdout)
    created = err("create", "--validate=false", "-f", "-", input=json.dumps({**obj, "metadata": {"name": "new"}}))
    assert "MethodNotAllowed" in created and "created by the controllers" in created, created
    stale = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "1"}, "spec": {"leave": False}}
    assert err("replace", "--validate=false", "-f", "-", input=json.dumps(stale)) == (
        'Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on '
        'etcdmembers.etcd.etcdward.io "n2": the object has been modified; please apply your changes to the '
        'latest version and try again')
    assert recs(nodes[0])["n2"].leave is False  # nothing above changed anything
    # Credentials: none, another CA's, an expired certificate, a join token: 401.
    base = kubectl.kubeconfig
    # (no certificate: basic auth credentials, since kubectl prompts for them when a user has none)
    refused = {"none": {"username": "admin", "password": "x"}, "token": {"token": nodes[0].token()},
               "foreign": _cert_user(foreign_client()), "expired": _cert_user(expired_client(nodes[0]))}
    for what, user in refused.items():
        k = Kubectl(kubeconfig_with(base, tmp_path / f"{what}.kubeconfig", **user), tmp_path / f"home-{what}")
        p = k("get", "em", check=False)
        assert p.returncode == 1 and "You must be logged in to the server" in p.stderr, (what, p.stderr)


def _cert_user(pair: object) -> dict[str, str]:
    return {"client-certificate-data": b64(pair.cert_pem), "client-key-data": b64(pair.key_pem)}  # type: ignore


def test_delete_a_hand_made_duplicate_with_wait(nodes: list[Node], kubectl: Kubectl) -> None:
    """The seed's mend: a record left under the FQDN by a departed member of the same node."""
    n1 = nodes[0]
    dup = inject_duplicate(n1, n1, "deadbeef00000001")
    wait_for(lambda: dup in table(kubectl("get", "em").stdout), 10, "the duplicate listed")
    wait_for(record_is(n1, dup, joined="False"), 20, "the reconciler marks it Joined=False", node=n1)
    t0 = time.monotonic()
    p = kubectl("delete", "etcdmember", dup, "--wait=true", timeout=30)
    print(f"measured: kubectl delete --wait: {time.monotonic() - t0:.2f}s")
    assert p.stdout.strip() == f'etcdmember.etcd.etcdward.io "{dup}" deleted'
    assert set(table(kubectl("get", "em").stdout)) == {"n1", "n2", "n3"}


def _watch_lines(proc: object) -> queue.Queue[tuple[float, str]]:
    q: queue.Queue[tuple[float, str]] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[attr-defined]
            q.put((time.monotonic(), line.rstrip("\n")))

    threading.Thread(target=pump, daemon=True).start()
    return q


def _seen(q: queue.Queue[tuple[float, str]], pred: object, timeout: float) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            t, line = q.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            break
        if pred(line.split()):  # type: ignore[operator]
            return t
    raise AssertionError(f"watch line not seen within {timeout}s")


def test_watch_sees_a_leave_and_a_deletion_and_the_reconciler_removes_the_member(
        nodes: list[Node], kubectl: Kubectl) -> None:
    n1, _, n3 = nodes
    watch = kubectl.popen("get", "etcdmembers", "-w", "--output-watch-events")
    try:
        q = _watch_lines(watch)
        _seen(q, lambda f: f[:2] == ["ADDED", "n3"], 10)
        t0 = time.monotonic()
        kubectl("patch", "etcdmember", "n3", "--type", "merge", "-p", '{"spec":{"leave":true}}')
        t_removed = _seen(q, lambda f: f[:2] == ["MODIFIED", "n3"] and "False" in f, 60)
        print(f"measured: leave asked -> watch shows n3 Joined=False: {t_removed - t0:.2f}s")
        assert n3.wait_exit(30) == 0, n3.log()[-2000:]
        assert "n3" not in {m.name for m in n1.members()}
        t1 = time.monotonic()
        kubectl("delete", "etcdmember", "n3")
        t_deleted = _seen(q, lambda f: f[:2] == ["DELETED", "n3"], 2)
        print(f"measured: delete -> watch DELETED: {t_deleted - t1:.2f}s")
    finally:
        watch.kill()
        watch.wait()
    assert set(table(kubectl("get", "em").stdout)) == {"n1", "n2"}
