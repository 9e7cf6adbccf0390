"""Steps the scenarios share: a leave through the records, a rejoin after reset, reading
records through etcdward's CLI and through kubectl on a node."""

from __future__ import annotations

from .harness import Host, ScenarioError, World, get_records, tail, wait_until


def kubectl_records(h: Host) -> list[tuple[str, str]]:
    p = h.kubectl("get", "etcdmembers", "--no-headers", "-o", "custom-columns=N:.metadata.name,ID:.status.memberID")
    if p.returncode != 0:
        raise ScenarioError(f"{h.node}: kubectl get etcdmembers: {p.stderr.strip()[-300:]}")
    return sorted((ln.split()[0], ln.split()[1]) for ln in p.stdout.splitlines() if ln.strip())


def leave_via_record(w: World, target: Host, via: Host) -> None:
    p = via.cli("patch", "etcdmember", target.node, "--leave")
    assert p.returncode == 0, f"patch --leave {target.node} via {via.node}: {p.stderr}"
    w.event(f"{via.node}: patch etcdmember {target.node} --leave: {p.stdout.strip()}")
    rc = wait_until(lambda: target.returncode() is not None and [target.returncode()], 90,
                    f"{target.node} controller exits after its removal", detail=lambda: tail(target.log_file))[0]
    assert rc == 0, f"{target.node} exited {rc} after being removed:\n{tail(target.log_file)}"
    assert target.tombstone().exists(), "no tombstone"
    w.event(f"{target.node}: removed, controller exited 0 with a tombstone")


def rejoin(w: World, target: Host, via: Host) -> None:
    p = target.cli("reset")
    assert p.returncode == 0, f"reset {target.node}: {p.stderr}"
    w.event(f"{target.node}: reset")
    target.start(via.token())


def record(via: Host, name: str) -> dict | None:
    return next((r for r in get_records(via) if r["metadata"]["name"] == name), None)
