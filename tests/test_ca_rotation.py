"""The README's "Rotating a CA by hand", done as written on a 3-node cluster, for the etcd CA
and for the cluster CA: trust both, sign with the new one, drop the old one, each step a rolling
restart with the cluster healthy (`etcdward status` exit 0 on every node) before the next node.
At the end every leaf is the new CA's, the old CA is trusted nowhere, the cluster still takes
writes, and (cluster CA) a new token joins a fourth node and a new kubeconfig works in kubectl."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from etcdward.paths import DataDir
from tests.cluster import Cluster, Node, wait_for
from tests.kube_helpers import Kubectl, write_kubeconfig
from tests.prereqs import needs

# the README's command (step 1), word for word for the etcd CA; the cluster CA's only differs in its name
NEW_CA = ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN={cn} "
          "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
          "-keyout new-ca.key -out new-ca.crt")

# which CA: (its files, the leaves it signs, the new CA's name)
CAS: dict[str, tuple[Callable[[DataDir], tuple[Path, Path]], Callable[[DataDir], list[Path]], str]] = {
    "etcd": (lambda d: d.etcd_cert("ca"), lambda d: [d.etcd_cert(k)[0] for k in ("server", "peer", "client")],
             "etcd-ca"),
    "cluster": (lambda d: (d.ca_crt, d.ca_key), lambda d: [d.api_crt], "etcdward-ca"),
}


def certs_in(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def signed_by(leaves: list[Path], ca: x509.Certificate) -> bool:
    for path in leaves:
        try:
            x509.load_pem_x509_certificate(path.read_bytes()).verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError):  # another issuer name: ValueError
            return False
    return True


def healthy(n: Node) -> bool:
    return n.cli("status", "--data-dir", str(n.data.root), check=False).returncode == 0


def rolling_restart(nodes: list[Node]) -> None:
    for n in nodes:
        assert n.stop() == 0, n.log()[-3000:]
        n.start()
        n.wait_ready(60)
        wait_for(lambda: all(healthy(m) for m in nodes), 60, f"all healthy after {n.name}'s restart", node=n)


@needs("etcd", "openssl")
@pytest.mark.parametrize("which", sorted(CAS))
def test_rotating_a_ca_as_the_readme_says(tmp_path: Path, which: str) -> None:
    files, leaves_of, cn = CAS[which]
    c = Cluster(tmp_path / "c")
    try:
        n1 = c.bootstrap("n1")
        token = n1.token()
        nodes = [n1, c.node("n2"), c.node("n3")]
        for n in nodes[1:]:
            n.start(token)
            c.wait_voters(n1, {m.name for m in nodes[: nodes.index(n) + 1]})
        wait_for(lambda: all(healthy(m) for m in nodes), 60, "all healthy", node=n1)
        old = certs_in(files(n1.data)[0])[0]

        # 1. back up, create the new CA once, on one node
        n1.cli("backup", "--save-path", str(tmp_path / "backups"), "--data-dir", str(n1.data.root))
        work = tmp_path / "newca"
        work.mkdir()
        subprocess.run(NEW_CA.format(cn=cn).split(), cwd=work, check=True, capture_output=True)
        new_crt, new_key = (work / "new-ca.crt").read_bytes(), work / "new-ca.key"
        new = x509.load_pem_x509_certificate(new_crt)

        # 2. trust both (old first: leaves stay signed by it), restart one by one
        for n in nodes:
            ca_crt, _ = files(n.data)
            shutil.copy(ca_crt, n.root / "old-ca.crt")
            ca_crt.write_bytes((n.root / "old-ca.crt").read_bytes() + new_crt)
        rolling_restart(nodes)
        assert all(signed_by(leaves_of(n.data), old) for n in nodes)

        # 3. sign with the new one: new first, its key in place (0600); at start each controller
        # issues new leaves (new keys) signed by it
        for n in nodes:
            ca_crt, ca_key = files(n.data)
            ca_crt.write_bytes(new_crt + (n.root / "old-ca.crt").read_bytes())
            shutil.copy(new_key, ca_key)
            ca_key.chmod(0o600)
        keys_before = {n.name: [p.with_suffix(".key").read_bytes() for p in leaves_of(n.data)] for n in nodes}
        rolling_restart(nodes)
        for n in nodes:
            assert signed_by(leaves_of(n.data), new), n.name
            assert all(p.with_suffix(".key").read_bytes() != k  # a new key, not a re-signed one
                       for p, k in zip(leaves_of(n.data), keys_before[n.name]))

        # 4. drop the old one, restart one by one
        for n in nodes:
            files(n.data)[0].write_bytes(new_crt)
        rolling_restart(nodes)
        for n in nodes:
            assert [x.subject for x in certs_in(files(n.data)[0])] == [new.subject]
            assert signed_by(leaves_of(n.data), new) and not signed_by(leaves_of(n.data), old)
        assert n1.etcdctl("put", "after-rotation", "ok").returncode == 0
        assert {m.name for m in n1.members() if not m.is_learner} == {"n1", "n2", "n3"}

        if which == "cluster":  # tokens and kubeconfigs carry the CA: new ones work
            n4 = c.node("n4")
            n4.start(n1.token())
            c.wait_voters(n1, {"n1", "n2", "n3", "n4"})
            assert certs_in(n4.data.ca_crt)[0].subject == new.subject
            kubectl = Kubectl(write_kubeconfig(nodes[1], tmp_path / "kubeconfig"), tmp_path / "home")
            assert set(kubectl("get", "etcdmembers", "-o", "name").stdout.split()) >= {
                f"etcdmember.etcd.etcdward.io/{name}" for name in ("n1", "n2", "n3")}
    finally:
        c.teardown()
