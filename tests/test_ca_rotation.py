"""The README's "Rotating a CA by hand", done as written on a 3-node cluster for the etcd CA:
trust both, sign with the new one, drop the old one, each step a rolling restart with the
cluster healthy (`etcdward status` exit 0) before the next node. At the end every leaf is the
new CA's, the old CA is trusted nowhere, and the cluster still takes writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from tests.cluster import Cluster, Node, wait_for
from tests.prereqs import needs

# the README's command, word for word (step 1)
NEW_CA = ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=etcd-ca "
          "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
          "-keyout new-ca.key -out new-ca.crt")


def certs_in(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def leaves_signed_by(n: Node, ca: x509.Certificate) -> bool:
    for kind in ("server", "peer", "client"):
        leaf = x509.load_pem_x509_certificate(n.data.etcd_cert(kind)[0].read_bytes())
        try:
            leaf.verify_directly_issued_by(ca)
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
def test_rotating_the_etcd_ca_as_the_readme_says(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c")
    try:
        n1 = c.bootstrap("n1")
        token = n1.token()
        nodes = [n1, c.node("n2"), c.node("n3")]
        for n in nodes[1:]:
            n.start(token)
            c.wait_voters(n1, {m.name for m in nodes[: nodes.index(n) + 1]})
        wait_for(lambda: all(healthy(m) for m in nodes), 60, "all healthy", node=n1)
        old = certs_in(n1.data.etcd_cert("ca")[0])[0]

        # 1. back up, create the new CA once, on one node
        n1.cli("backup", "--save-path", str(tmp_path / "backups"), "--data-dir", str(n1.data.root))
        work = tmp_path / "newca"
        work.mkdir()
        subprocess.run(NEW_CA.split(), cwd=work, check=True, capture_output=True)
        new_crt, new_key = (work / "new-ca.crt").read_bytes(), work / "new-ca.key"
        new = x509.load_pem_x509_certificate(new_crt)

        # 2. trust both (old first: leaves stay signed by it), restart one by one
        for n in nodes:
            ca_crt = n.data.etcd_cert("ca")[0]
            shutil.copy(ca_crt, n.root / "old-ca.crt")
            ca_crt.write_bytes((n.root / "old-ca.crt").read_bytes() + new_crt)
        rolling_restart(nodes)
        assert all(leaves_signed_by(n, old) for n in nodes)

        # 3. sign with the new one: new first, its key in place (0600); at start each controller
        # issues new leaves (new keys) signed by it
        for n in nodes:
            ca_crt, ca_key = n.data.etcd_cert("ca")
            ca_crt.write_bytes(new_crt + (n.root / "old-ca.crt").read_bytes())
            shutil.copy(new_key, ca_key)
            ca_key.chmod(0o600)
        before = {n.name: n.data.etcd_cert("peer")[1].read_bytes() for n in nodes}
        rolling_restart(nodes)
        for n in nodes:
            assert leaves_signed_by(n, new), n.name
            assert n.data.etcd_cert("peer")[1].read_bytes() != before[n.name]  # a new key, not a re-signed one

        # 4. drop the old one, restart one by one
        for n in nodes:
            n.data.etcd_cert("ca")[0].write_bytes(new_crt)
        rolling_restart(nodes)
        for n in nodes:
            assert [x.subject for x in certs_in(n.data.etcd_cert("ca")[0])] == [new.subject]
            assert leaves_signed_by(n, new) and not leaves_signed_by(n, old)
        assert n1.etcdctl("put", "after-rotation", "ok").returncode == 0
        assert {m.name for m in n1.members() if not m.is_learner} == {"n1", "n2", "n3"}
        key = serialization.load_pem_private_key(new_key.read_bytes(), None)
        assert key.public_key().public_numbers() == new.public_key().public_numbers()  # type: ignore[union-attr]
    finally:
        c.teardown()

