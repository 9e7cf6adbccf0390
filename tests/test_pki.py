"""PKI: CAs are created once and never overwritten; leaves follow the config."""

from __future__ import annotations

import stat

from cryptography import x509

from etcdward import pki
from etcdward.paths import DataDir


def _ensure(data: DataDir, peer: str = "10.0.0.1", sans: tuple[str, ...] = ()) -> None:
    pki.ensure_node_pki(data, peer_address=peer, api_address=peer, sans=sans, hostname="Host-A")


def _sans(path) -> set[str]:  # type: ignore[no-untyped-def]
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(ext.get_values_for_type(x509.DNSName))


def test_layout_modes_and_sans(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = DataDir(tmp_path)
    _ensure(data, sans=("api.example.org",))
    files = [data.ca_crt, data.ca_key, data.api_crt, data.api_key] + [
        p for k in ("ca", "server", "peer", "client") for p in data.etcd_cert(k)]
    for f in files:
        assert f.exists(), f
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o600 if f.suffix == ".key" else 0o644), (f, oct(mode))
    want = {"localhost", "127.0.0.1", "10.0.0.1", "api.example.org", "host-a"}
    assert _sans(data.etcd_cert("server")[0]) == want
    assert _sans(data.api_crt) == want


def test_ca_never_overwritten_and_leaves_follow_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = DataDir(tmp_path)
    _ensure(data)
    ca_before = data.ca_crt.read_bytes(), data.etcd_cert("ca")[0].read_bytes()
    server_before = data.etcd_cert("server")[0].read_bytes()
    _ensure(data)  # same config: nothing changes
    assert data.etcd_cert("server")[0].read_bytes() == server_before
    _ensure(data, peer="10.0.0.2")  # new peer address: leaves regenerated, CAs kept
    assert (data.ca_crt.read_bytes(), data.etcd_cert("ca")[0].read_bytes()) == ca_before
    assert data.etcd_cert("server")[0].read_bytes() != server_before
    assert "10.0.0.2" in _sans(data.etcd_cert("peer")[0])


def test_user_supplied_ca_is_used_as_is(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = DataDir(tmp_path)
    user_ca = pki.new_ca("my-own-ca")
    data.etcd_pki.mkdir(parents=True)
    pki.write_pair(user_ca, *data.etcd_cert("ca"))
    _ensure(data)
    assert data.etcd_cert("ca")[0].read_bytes() == user_ca.cert_pem
    leaf = x509.load_pem_x509_certificate(data.etcd_cert("server")[0].read_bytes())
    leaf.verify_directly_issued_by(user_ca.cert)


def test_incomplete_ca_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    data = DataDir(tmp_path)
    data.pki.mkdir()
    data.ca_crt.write_bytes(pki.new_ca("x").cert_pem)
    with pytest.raises(pki.PKIError, match="ca.key is missing"):
        _ensure(data)


# -- pkiprocess.PKIWorker: the child forked early that does the start's PKI work -----------------

def _child_gone(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone too (not reaped by us: not our child)
        return fh.read().split(") ", 1)[1].startswith("Z")


def test_worker_does_its_job_in_the_child_and_raises_its_error_here(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from etcdward.pkiprocess import PKIWorker

    data = DataDir(tmp_path / "a")
    with PKIWorker() as w:
        pid = w.pid
        w.ensure_node_pki(data, peer_address="10.0.0.1", api_address="10.0.0.1", sans=(), hostname="h")
    assert w.pid is None and pid is not None and _child_gone(pid)
    assert _sans(data.etcd_cert("server")[0]) >= {"10.0.0.1", "h"}
    with pytest.raises(RuntimeError, match="one job"):  # reaped already: never a second job
        w.ensure_node_pki(data)

    bad = DataDir(tmp_path / "b")
    bad.pki.mkdir(parents=True)
    bad.ca_crt.write_bytes(pki.new_ca("x").cert_pem)
    with PKIWorker() as w, pytest.raises(pki.PKIError, match="ca.key is missing"):
        w.ensure_node_pki(bad, peer_address="10.0.0.1", api_address="10.0.0.1", sans=(), hostname="h")


def test_a_joiners_worker_yields_until_its_job_comes(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """PKIWorker(nice=N): the child runs N lower than its parent until its job is sent; then at
    the parent's own priority again (root may raise it back; others keep it lower)."""
    import os

    from etcdward import pkiprocess

    own = os.getpriority(os.PRIO_PROCESS, 0)
    restored: list[int] = []
    real = os.setpriority

    def recording(which: int, who: int, value: int) -> None:
        real(which, who, value)
        restored.append(os.getpriority(os.PRIO_PROCESS, who))

    with pkiprocess.PKIWorker(nice=pkiprocess.JOINER_NICE) as w:
        assert w.pid is not None
        assert os.getpriority(os.PRIO_PROCESS, w.pid) == min(19, own + pkiprocess.JOINER_NICE)
        monkeypatch.setattr(os, "setpriority", recording)
        w.ensure_node_pki(DataDir(tmp_path / "a"), peer_address="10.0.0.1", api_address="10.0.0.1", sans=(),
                          hostname="h")
    assert restored == ([own] if os.geteuid() == 0 else [])  # as another user the restore is refused: ignored


def test_an_unused_worker_ends_with_its_parent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """close() ends an unused child; so does its parent's death (SIGKILL: nothing closes the pipe
    but the kernel), so a controller killed while it joins leaves no process behind."""
    import subprocess
    import sys
    import time

    from etcdward.pkiprocess import PKIWorker

    w = PKIWorker()
    pid = w.pid
    w.close()
    assert pid is not None and _child_gone(pid) and w.pid is None
    w.close()  # twice: nothing happens

    parent = subprocess.Popen([sys.executable, "-c", "import time\nfrom etcdward.pkiprocess import PKIWorker\n"
                               "w = PKIWorker()\nprint(w.pid, flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _child_gone(child)
        parent.kill()
        parent.wait()
        end = time.monotonic() + 10
        while not _child_gone(child) and time.monotonic() < end:
            time.sleep(0.02)
        assert _child_gone(child)
    finally:
        parent.kill()
        parent.wait()
