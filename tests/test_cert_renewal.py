"""Certificate renewal on running controllers (issue 14, part 2), against real etcd: with a
1-minute certLifetime every leaf is renewed about every 40 s; the cluster keeps taking writes,
the served certificates (etcd client and peer ports, the API) change serial and never expire,
the controllers' own etcd clients reconnect with the renewed client certificate, a join works
afterwards, and `certs renew --all` renews on every controller."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import ssl
import time
from collections import defaultdict

from cryptography import x509

from etcdward.keys import ALIVE
from tests.cluster import Cluster, Node, wait_for

SHORT = {"spec": {"pki": {"certLifetime": "1m"}}}


def served(node: Node, kind: str) -> x509.Certificate:
    """The certificate a node serves now on its etcd client or peer port or its API."""
    data = node.data
    ca = data.ca_crt if kind == "api" else data.etcd_cert("ca")[0]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(ca))
    if kind != "api":  # etcd requires a client certificate on both ports
        crt, key = data.etcd_cert("client" if kind == "client" else "peer")
        ctx.load_cert_chain(crt, key)
    host, port = {"client": ("127.0.0.1", node.client_port), "peer": (node.address, 2380),
                  "api": (node.address, 9443)}[kind]
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def alive_names(node: Node) -> set[str]:
    out = node.etcdctl("get", ALIVE, "--prefix", "--keys-only").stdout.split()
    return {k.removeprefix(ALIVE) for k in out}


def test_renewals_keep_the_cluster_working_and_never_serve_an_expired_certificate(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1", extra_config=SHORT)
    n2 = cluster.node("n2", extra_config=SHORT)
    n2.start(n1.token())
    cluster.wait_voters(n1, {"n1", "n2"}, timeout=90)
    wait_for(lambda: served(n2, "api"), 30, "n2's API", node=n2)
    serials: dict[tuple[str, str], set[int]] = defaultdict(set)
    end, writes = time.monotonic() + 150, 0
    while time.monotonic() < end and not (serials and all(len(s) >= 3 for s in serials.values())):
        for n in (n1, n2):
            for kind in ("client", "peer", "api"):
                cert = served(n, kind)
                now = dt.datetime.now(dt.timezone.utc)
                assert cert.not_valid_after_utc > now, f"{n.name} {kind} served an expired certificate"
                serials[(n.name, kind)].add(cert.serial_number)
        put = n1.etcdctl("put", f"/renewal/{writes}", "v")
        assert put.returncode == 0, put.stderr
        writes += 1
        time.sleep(1)
    assert len(serials) == 6 and all(len(s) >= 3 for s in serials.values()), dict(serials)  # >= 2 renewals each
    for n in (n1, n2):
        assert "restarting etcd" not in n.log() and "restart #" not in n.log()  # etcd was never restarted
        assert "now using the renewed certificates" in n.log()
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in n.data.pki.rglob("*.key"))

    # The controller's own etcd client: a restarted etcd makes it reconnect, which works only
    # with the renewed client certificate (the one it started with has expired by now).
    old = n2.etcd_pid()
    assert old
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: n2.etcd_pid() not in (None, old), 20, "n2's etcd restarted", node=n2)
    n2.wait_ready()
    member2 = format(n2.status().member_id, "x")
    time.sleep(5)  # longer than the liveness lease (4 s in tests): only a renewed key is still there
    wait_for(lambda: member2 in alive_names(n1), 20, "n2's controller writing its liveness again", node=n2)

    # the join API (renewed certificate) and the reconciler (its etcd client) still add a member
    n3 = cluster.node("n3")
    n3.start(n2.token())
    cluster.wait_voters(n1, {"n1", "n2", "n3"}, timeout=90)
    wait_for(lambda: served(n3, "api"), 30, "n3's API", node=n3)

    before = {n.name: served(n, "api").serial_number for n in (n1, n2, n3)}
    out = n1.cli("certs", "renew", "--all", "--data-dir", str(n1.data.root)).stdout
    assert out.count("renewed api, etcd-client, etcd-peer, etcd-server") == 3, out
    wait_for(lambda: all(served(n, "api").serial_number != before[n.name] for n in (n1, n2, n3)), 15,
             "every API serving its renewed certificate")
