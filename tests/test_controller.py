"""The controller lifecycle against real etcd: bootstrap, restart, supervision, clean stop,
identity pinning, member-list, and bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster, Node, wait_for
from tests.prereqs import needs



def _etcd_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_bootstrap_restart_keeps_data_and_ids(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    assert "start decision: BOOTSTRAP" in n1.log()
    assert n1.etcdctl("put", "/k", "v").returncode == 0
    st = n1.status()
    ident = json.loads(n1.data.identity_file.read_text())
    assert ident == {"name": "n1", "clusterID": format(st.cluster_id, "x"), "memberID": format(st.member_id, "x")}
    etcd_pid = n1.etcd_pid()
    assert n1.stop() == 0  # SIGTERM -> clean exit 0
    assert not _etcd_alive(etcd_pid), "etcd must stop with the controller"
    n1.start()
    n1.wait_ready()
    assert "start decision: START" in n1.log()
    assert n1.etcdctl("get", "/k", "--print-value-only").stdout.strip() == "v"
    st2 = n1.status()
    assert (st2.cluster_id, st2.member_id) == (st.cluster_id, st.member_id)


def test_member_list_k0s_format_and_etcdctl_oracle(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    out = n1.cli("etcd", "member-list", "--data-dir", str(n1.data.root)).stdout
    assert out == '{"members":{"n1":"%s"}}\n' % n1.peer_url  # byte for byte, one line
    listed = json.loads(n1.etcdctl("member", "list", "-w", "json").stdout)["members"]
    assert [(m["name"], m["peerURLs"]) for m in listed] == [("n1", [n1.peer_url])]
    table = n1.cli("etcd", "member-list", "-o", "wide", "--data-dir", str(n1.data.root)).stdout
    assert format(listed[0]["ID"], "x") in table and "https://127.0.0.1:" in table
    bad = n1.cli("etcd", "member-list", "extra", "--data-dir", str(n1.data.root), check=False)
    assert bad.returncode != 0


def test_member_list_without_etcd_fails(tmp_path: Path) -> None:
    n = Node("n1", tmp_path)
    n.data.etcd_pki.mkdir(parents=True)
    from etcdward import pki

    pki.ensure_node_pki(n.data, peer_address="127.0.0.1", api_address="127.0.0.1", sans=(), hostname="h")
    p = n.cli("etcd", "member-list", "--data-dir", str(n.data.root), check=False)
    assert p.returncode != 0
    assert p.stderr.startswith("can't list etcd cluster members: ")


def test_supervisor_restarts_killed_etcd(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    assert n1.etcdctl("put", "/before", "1").returncode == 0
    old = n1.etcd_pid()
    assert old
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: n1.etcd_pid() not in (None, old), 20, "etcd restarted", node=n1)
    n1.wait_ready()
    assert n1.etcdctl("get", "/before", "--print-value-only").stdout.strip() == "1"
    assert n1.alive()
    assert "restart #1" in n1.log()


def test_sigint_and_sigterm_stop_everything(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    etcd = n1.etcd_pid()
    assert n1.proc
    n1.proc.send_signal(signal.SIGINT)
    assert n1.proc.wait(30) == 0
    assert not _etcd_alive(etcd)


def test_repeated_fast_crashes_give_up_with_log_tail(cluster: Cluster) -> None:
    n = cluster.node("n1", extra_config={"spec": {"storage": {"etcd": {"extraArgs": {"heartbeat-interval": "x"}}}}})
    n.start()
    rc = n.wait_exit(90)
    assert rc != 0
    log = n.log()
    assert "etcd exited 5 times" in log
    err = log[log.index("etcd exited 5 times"):]
    assert "invalid value" in err and "heartbeat-interval" in err  # etcd's own complaint is shown


def test_pinned_cluster_id_mismatch_refuses(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    assert n1.stop() == 0
    ident = json.loads(n1.data.identity_file.read_text())
    real = ident["clusterID"]
    ident["clusterID"] = "deadbeef"
    n1.data.identity_file.write_text(json.dumps(ident))
    n1.start()
    assert n1.wait_exit(60) != 0
    assert "deadbeef" in n1.log() and real in n1.log()


def test_db_gone_with_pinned_cluster_refuses_to_bootstrap(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    assert n1.stop() == 0
    import shutil

    shutil.rmtree(n1.data.etcd)
    n1.start()
    assert n1.wait_exit(30) != 0
    assert "bootstrapping would create a second cluster" in n1.log()
    assert not n1.data.etcd.exists()


def test_partial_etcd_dir_is_moved_aside(cluster: Cluster) -> None:
    n = cluster.node("n1")
    (n.data.etcd / "member" / "wal").mkdir(parents=True)
    (n.data.etcd / "member" / "wal" / "0.wal").write_bytes(b"junk")
    n.start()
    n.wait_ready()
    aside = [p for p in n.data.root.iterdir() if p.name.startswith("etcd.aside-")]
    assert len(aside) == 1 and (aside[0] / "member" / "wal" / "0.wal").exists()
    assert "moved partial etcd data dir aside to" in n.log()


@needs("root", "unshare")  # a private UTS namespace
def test_hostname_change_keeps_member_name(cluster: Cluster) -> None:
    def in_host(name: str) -> list[str]:
        return ["unshare", "--uts", "sh", "-c", f'hostname {name} && exec "$@"', "sh"]

    n = cluster.node("node", use_name=False, wrapper=in_host("Host-A.example.org"))
    n.start()
    n.wait_ready()
    assert [m.name for m in n.members()] == ["host-a"]
    assert n.stop() == 0
    n.wrapper = in_host("host-b")
    n.start()
    n.wait_ready()
    assert [m.name for m in n.members()] == ["host-a"]
    assert json.loads(n.data.identity_file.read_text())["name"] == "host-a"


# -- bad input: one clear line, non-zero exit, data dir unchanged ------------------------------
def _controller(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "etcdward", "controller", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def _snapshot(d: Path) -> list[str]:
    # etcdward.lock is taken before anything else and never removed; it holds no state.
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.name != "etcdward.lock") if d.exists() else []


@pytest.mark.parametrize("setup,args,expect", [
    ("missing-config", ["-c", "{d}/nope.yaml"], "cannot read config file"),
    ("unknown-key", ["-c", "{d}/c.yaml"], "spec.storage.etcd.bogus: unknown key"),
    ("bad-port", ["-c", "{d}/c.yaml"], "spec.api.port"),
    ("no-etcd", [], "ETCDWARD_ETCD_BIN"),
    ("port-in-use", ["-c", "{d}/c.yaml"], "etcd client port 127.0.0.1:"),
])
def test_bad_input(tmp_path: Path, setup: str, args: list[str], expect: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep").write_text("x")
    env = {}
    cfg = {"unknown-key": "spec: {storage: {etcd: {bogus: 1}}}", "bad-port": "spec: {api: {port: 99999}}"}
    held = None
    if setup in cfg:
        (tmp_path / "c.yaml").write_text(cfg[setup])
    if setup == "no-etcd":
        env["ETCDWARD_ETCD_BIN"] = str(tmp_path / "no-such-etcd")
    if setup == "port-in-use":
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen()
        (tmp_path / "c.yaml").write_text(f"spec: {{storage: {{etcd: {{peerAddress: 127.77.250.1, "
                                        f"clientPort: {held.getsockname()[1]}}}}}}}")
    before = _snapshot(data)
    try:
        p = _controller(tmp_path, *[a.format(d=tmp_path) for a in args], "--data-dir", str(data), env=env)
    finally:
        if held:
            held.close()
    assert p.returncode != 0
    assert expect in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert _snapshot(data) == before


def test_unwritable_data_dir(tmp_path: Path) -> None:
    # a file in place of the dir, not chmod: root ignores file permissions (this works for anyone)
    f = tmp_path / "file"
    f.write_text("x")
    p = _controller(tmp_path, "--data-dir", str(f / "sub"))
    assert p.returncode != 0 and "not writable" in p.stderr


def test_config_validate(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("spec: {storage: {etcd: {peerAddress: 10.1.2.3}}}")
    p = subprocess.run([sys.executable, "-m", "etcdward", "config", "validate", "-c", str(good)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "peerAddress: 10.1.2.3" in p.stdout and "clientPort: 2379" in p.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: {api: {port: -1}}")
    p = subprocess.run([sys.executable, "-m", "etcdward", "config", "validate", "-c", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "spec.api.port" in p.stderr


def test_start_ignores_token(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    assert n1.stop() == 0
    n1.start("garbage-token-that-is-never-read")
    n1.wait_ready()
    assert "start decision: START" in n1.log()
    time.sleep(0.1)


def test_sigterm_stops_a_joiner_that_is_still_waiting(cluster: Cluster) -> None:
    from etcdward import pki, tokens

    tok = tokens.encode(tokens.JoinToken("https://127.77.250.250:9443", pki.new_ca("x").cert_pem,
                                         "abcdef.0123456789abcdef"))
    n = cluster.node("n2")
    n.start(tok)
    wait_for(lambda: "retrying in" in n.log() or "joining via" in n.log(), 20, "join attempts", node=n)
    assert n.proc
    t0 = time.monotonic()
    n.proc.send_signal(signal.SIGTERM)
    assert n.proc.wait(15) == 0
    assert time.monotonic() - t0 < 10
    assert not n.data.etcd_db.exists()


def test_status_command(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")
    healthy = wait_for(lambda: (p := n1.cli("status", "-o", "json", "--data-dir", str(n1.data.root), check=False))
                       .returncode == 0 and p, 20, "status exits 0 (healthy)", node=n1)
    out = json.loads(healthy.stdout)
    st = n1.status()
    assert out["member"] == "n1" and out["role"] == "voter" and out["healthy"] is True
    assert out["clusterID"] == format(st.cluster_id, "x") == out["pinnedClusterID"]
    wait_for(lambda: json.loads(n1.cli("status", "-o", "json", "--data-dir", str(n1.data.root)).stdout)
             ["reconcilerLeader"] == "n1", 15, "reconciler leader shown")
    assert n1.stop() == 0
    p = n1.cli("status", "--data-dir", str(n1.data.root), check=False)
    assert p.returncode != 0 and p.stderr.startswith("can't get status: ")


def test_bad_token_is_refused_before_the_data_dir_is_touched(cluster: Cluster) -> None:
    n = cluster.node("n2")
    wal = n.data.etcd / "member" / "wal"
    wal.mkdir(parents=True)
    n.start("not-a-token")
    assert n.wait_exit(30) != 0
    assert "join failed: join token is not valid" in n.log()
    assert wal.exists() and not any(p.name.startswith("etcd.aside-") for p in n.data.root.iterdir())


def test_node_pinned_to_another_cluster_refuses_before_asking_for_a_learner(cluster: Cluster) -> None:
    import shutil

    a1 = cluster.bootstrap("a1")
    b1 = cluster.bootstrap("b1")  # a second, unrelated cluster
    token_b = b1.token()
    assert a1.stop() == 0
    shutil.rmtree(a1.data.etcd)  # a1 lost its data but still pins cluster A
    a1.start(token_b)
    assert a1.wait_exit(60) != 0
    assert "is pinned to cluster" in a1.log()
    assert [m.name for m in b1.members()] == ["b1"]  # no phantom learner left in cluster B
