"""Multi-host scenarios (issue 5): real controllers, one per network-namespace node.

Every scenario ends with World.check_invariants(): one cluster ID, one member list, records ==
members, no acknowledged write lost, no orphan etcd (and nobody but n1 ever bootstrapped).
Needs root; see conftest.py for seeds, --soak and replaying a seed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from tests.prereqs import needs

from .harness import (
    LEASE_TTL,
    Host,
    ScenarioError,
    World,
    joined,
    tail,
    wait_until,
)
from .steps import kubectl_records, leave_via_record, record, rejoin

pytestmark = [pytest.mark.root, pytest.mark.slow, needs("netbed", "etcd", "etcdctl")]


def form(w: World, joiners: list[Host] | None = None, writer: bool = True) -> tuple[Host, str]:
    """n1 bootstraps; the others (or `joiners`) join in parallel with one token."""
    n1 = w.bootstrap("n1")
    token = n1.token()
    if writer:
        w.start_writer()
    for h in w.others(n1) if joiners is None else joiners:
        h.start(token)
    return n1, token


def count_lines(w: World, needle: str) -> int:
    return sum(len(h.log_lines(needle)) for h in w.hosts.values())


# ---- 1 ----------------------------------------------------------------------------------

def test_parallel_join(world) -> None:
    """5 controllers join in parallel with one token."""
    w = world(5)
    form(w)
    w.wait_voters(w.names(), timeout=240)
    promoted = [line for h in w.hosts.values() for line in h.log_lines("promoted learner")]
    assert len(promoted) == 4, promoted  # each learner promoted once, by one reconciler
    w.check_invariants(w.names())


# ---- 2 ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the joiners started
    node: str
    mode: str  # "both" (machine crash) | "controller" (etcd must follow by PDEATHSIG)
    down: float  # seconds before the restart


def kill_schedule(w: World, window: float = 25.0) -> list[Fault]:
    """The whole fault plan, derived from the seed only (so a seed replays the same plan)."""
    rng = w.rng
    joiners = sorted(w.names() - {"n1"})
    t, out = rng.uniform(0.3, 2.5), []
    while t < window:
        node = "n1" if rng.random() < 0.25 else rng.choice(joiners)  # n1 serves the join API
        mode = "controller" if rng.random() < 0.3 else "both"
        down = round(rng.uniform(0.0, 3.0), 2)
        out.append(Fault(round(t, 2), node, mode, down))
        t += down + rng.uniform(0.3, 4.0)
    if not any(f.node == "n1" for f in out):  # every plan hits the join API server at least once
        i = rng.randrange(len(out))
        out[i] = Fault(out[i].at, "n1", out[i].mode, out[i].down)
    return out


def test_parallel_join_with_kills(world, seed: int) -> None:
    """Scenario 1 with seeded random kill -9 of joiners and of n1 (the join API) at random
    moments, each followed by a restart (joiners with the same token, as a service would)."""
    w = world(5, seed=seed)
    plan = kill_schedule(w)
    w.event(f"kill plan (seed {seed}): " + "; ".join(f"{f.at}s {f.node} {f.mode} down {f.down}s" for f in plan))
    n1, token = form(w)
    t0 = time.monotonic()
    for f in plan:
        time.sleep(max(0.0, t0 + f.at - time.monotonic()))
        h = w[f.node]
        if not h.alive():
            w.violation(f"{h.node}: controller exited by itself (rc {h.returncode()}):\n{tail(h.log_file, 15)}")
        else:
            h.kill9(f.mode)
        time.sleep(f.down)
        h.start(None if h is n1 else token)
    w.check_invariants(w.names(), timeout=300)


# ---- 3 ----------------------------------------------------------------------------------

def _restart_storm(w: World, hosts: list[Host], token: str, seconds: float) -> int:
    """Keep kill -9 + restarting random joiners (with the token) for `seconds`."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        h = w.rng.choice(hosts)
        if h.alive():
            h.kill9("both")
        else:
            w.violation(f"{h.node}: controller exited by itself (rc {h.returncode()}):\n{tail(h.log_file, 15)}")
        time.sleep(w.rng.uniform(0.0, 1.0))
        h.start(token)
        n += 1
        time.sleep(w.rng.uniform(0.5, 2.5))
    return n


def test_k0s_storm(world, rseed: int) -> None:
    """The join API is unavailable for a while (its controller down, then unreachable) while
    the joiners keep restarting -> all end in the one cluster, none ever bootstraps."""
    w = world(5, seed=rseed)
    n1 = w.bootstrap("n1")
    token = n1.token()
    w.start_writer()
    joiners = w.others(n1)
    n1.kill9("both")  # phase A: the join API (and the only member) is down: connection refused
    for h in joiners:
        h.start(token)
    a = _restart_storm(w, joiners, token, 15)
    n1.start()  # phase B: back, but unreachable from the joiners: connections time out
    w.partition(n1, joiners)
    b = _restart_storm(w, joiners, token, 10)
    w.heal(n1)  # phase C: reachable; the joiners keep restarting while they join
    c = _restart_storm(w, joiners, token, 10)
    w.event(f"storm restarts: {a} while down, {b} while unreachable, {c} while joining")
    for h in joiners:
        if not h.alive():
            h.start(token)
    checked = w.check_invariants(w.names(), timeout=300)
    for h in joiners:
        assert not h.log_lines("start decision: BOOTSTRAP"), f"{h.node} bootstrapped"
        assert (h.identity() or {}).get("clusterID") == checked.cluster_id


# ---- 4 ----------------------------------------------------------------------------------

def _wait_log(h: Host, needle: str, timeout: float) -> None:
    wait_until(lambda: h.log_lines(needle), timeout, f"{h.node} log: {needle!r}", interval=0.02)


STALE_PEER = ("etcd-io/etcd#14523: {s}'s etcd rejected every member add as 'unhealthy cluster' (\"{line}\") "
              "although every voter was live, and the product's workaround (reconcile/unstick.py) did not unstick it")


def _member_add_rejections(h: Host) -> list[str]:
    """etcd's own log lines (3.4 and 3.5 wording) refusing a member add on `h`, from its tail."""
    lines = tail(h.etcd_log, 40).splitlines()
    return [ln for ln in lines if "rejecting member add" in ln]


def _wait_join_through(w: World, server: Host, names: set[str], timeout: float = 150.0) -> None:
    """wait_voters(names), strictly: the test never restarts `server`. If its etcd keeps a
    healed peer marked inactive (etcd#14523), the product restarts that etcd by itself after
    ~15 s of refused adds (logged with "etcd#14523"); the timeout leaves room for that."""
    try:
        w.wait_voters(names, timeout=timeout)
    except ScenarioError:
        rejections = _member_add_rejections(server)
        if rejections:
            raise ScenarioError(STALE_PEER.format(s=server.node, line=rejections[-1][-160:])) from None
        raise
    finally:
        for h in w.hosts.values():
            for line in h.log_lines("etcd#14523"):
                w.event(f"{h.node} worked around etcd#14523: {line[-200:]}")


def test_partition_leader_during_join(world, rseed: int) -> None:
    """Partition the etcd leader while a member joins (twice: the leader is the join API
    server and the learner was just added; the leader is another node and the join request is
    in flight), heal, and everything converges."""
    w = world(5, seed=rseed)
    n1, n2, n3, n4, n5 = (w[f"n{i}"] for i in range(1, 6))
    _, token = form(w, joiners=[n2, n3])
    w.wait_voters({"n1", "n2", "n3"}, timeout=180)
    # (a) n4 joins; partition the leader the moment its learner is added
    leader = w.etcd_leader()
    server = n1  # the token points at n1's join API
    n4.start(token)
    _wait_log(server, "added learner n4", 120)
    w.partition(leader)
    w.event(f"(a) partitioned etcd leader {leader.node} right after the learner add; members seen by "
            f"{n2.node}: {[(m['name'] or '?', m['isLearner']) for m in n2.members()[1]]}")
    time.sleep(w.rng.uniform(5, 10))
    w.heal(leader)
    _wait_join_through(w, server, {"n1", "n2", "n3", "n4"})
    # (b) the leader is not the API server; partition it while n5's join request is in flight
    voters = [n1, n2, n3, n4]
    leader = w.etcd_leader(voters)
    if leader is server:
        target = n2
        p = leader.etcdctl("move-leader", target.status()["member_id"], timeout=10)
        assert p.returncode == 0, p.stderr
        wait_until(lambda: w.etcd_leader(voters) is target, 30, "leadership moved to n2")
        leader = target
    n5.start(token)
    _wait_log(n5, "joining via", 60)
    w.partition(leader)
    time.sleep(w.rng.uniform(5, 10))
    w.heal(leader)
    _wait_join_through(w, server, w.names())
    w.check_invariants(w.names(), timeout=240)


# ---- 5 ----------------------------------------------------------------------------------

def test_hostname_flips(world) -> None:
    """Hostnames flip between short name and FQDN (the k0s #5369 trigger) with restarts on
    every node: names stay stable, no duplicate records, still one cluster."""
    w = world(3)
    n1, n2, n3 = w["n1"], w["n2"], w["n3"]
    n2.set_hostname(n2.fqdn())  # n2 joins while its hostname is the FQDN
    form(w)
    w.wait_voters({"n1", "n2", "n3"}, timeout=180)
    # n3: short name first in /etc/hosts, FQDN as alias: `hostname -f` and getfqdn() disagree
    hosts = w.bed.default_hosts().replace(f"{n3.fqdn()}\tn3", f"n3\t{n3.fqdn()}")
    w.bed.write_hosts("n3", hosts)
    current = {"n1": "n1", "n2": n2.fqdn(), "n3": "n3"}
    for rnd in range(2):
        for h in (n1, n2, n3):
            short = h.node
            current[short] = h.fqdn() if current[short] == short else short
            h.set_hostname(current[short])
            h.restart(how="term" if (rnd + int(h.node[1:])) % 2 else "kill")
            wait_until(h.serves, 120, f"{h.node} serving after restart", detail=lambda h=h: tail(h.log_file))
            assert (h.identity() or {}).get("name") == short, h.identity()
        # flip one node while it runs, no restart
        current["n1"] = n1.fqdn() if current["n1"] == "n1" else "n1"
        n1.set_hostname(current["n1"])
    w.wait_voters({"n1", "n2", "n3"}, timeout=120)
    # What an operator sees with kubectl on every node (before the invariants stop them): exactly
    # one record per member, named like it, with its member ID.
    want = sorted((m["name"], m["id"]) for m in n1.members()[1])
    wait_until(lambda: all(kubectl_records(h) == want for h in (n1, n2, n3)), 30,
               f"kubectl get etcdmembers == {want} on every node",
               detail=lambda: "; ".join(f"{h.node}: {kubectl_records(h)}" for h in (n1, n2, n3)))
    checked = w.check_invariants({"n1", "n2", "n3"})
    assert sorted(m["name"] for m in checked.members) == ["n1", "n2", "n3"]
    assert sorted(r["metadata"]["name"] for r in checked.records) == ["n1", "n2", "n3"]


def test_leave_and_rejoin(world) -> None:
    """Leave through the records (`patch etcdmember NAME --leave`) and rejoin after `reset`,
    first for an ordinary member, then for the reconciler leader itself."""
    w = world(3)
    form(w)
    w.wait_voters(w.names(), timeout=180)
    leader_name = wait_until(lambda: w.reconciler_leader(), 30, "a reconciler leader")
    rec_leader = w[leader_name]
    plain = next(h for h in w.hosts.values() if h is not rec_leader)
    for target in (plain, rec_leader):
        rest = [h for h in w.hosts.values() if h is not target]
        via = rest[0]
        removals_before = count_lines(w, f"removed member {target.node} (id")
        leave_via_record(w, target, via)
        w.wait_voters({h.node for h in rest}, timeout=120, via=rest)
        rec = wait_until(lambda: (r := record(via, target.node)) and joined(r) is False and r, 30,
                         f"record {target.node} Joined=False")
        w.event(f"record {target.node} after leave: {rec.get('status')}")
        assert count_lines(w, f"removed member {target.node} (id") == removals_before + 1
        if target is rec_leader:
            new_leader = wait_until(lambda: (n := w.reconciler_leader()) and n != target.node and n, 60,
                                    "another reconciler leader")
            w.event(f"reconciler leader is now {new_leader}")
        rejoin(w, target, via)
        w.wait_voters(w.names(), timeout=180)
        time.sleep(2 * LEASE_TTL)  # give a stale spec.leave every chance to be applied again
        w.wait_voters(w.names(), timeout=30)
        assert count_lines(w, f"removed member {target.node} (id") == removals_before + 1, "leave applied twice"
    w.check_invariants(w.names())


# ---- 7 ----------------------------------------------------------------------------------

def test_minority_leave(world) -> None:
    """The reconciler leader is cut off into a minority and asks to leave from there (via its
    record and via `etcd leave`): refused or deferred, never applied twice."""
    w = world(3)
    form(w)
    w.wait_voters(w.names(), timeout=180)
    name = wait_until(lambda: w.reconciler_leader(), 30, "a reconciler leader")
    lone = w[name]
    majority = [h for h in w.hosts.values() if h is not lone]
    w.partition(lone)
    attempts = {}
    for args in (("patch", "etcdmember", lone.node, "--leave"), ("etcd", "leave")):
        t = time.monotonic()
        p = lone.cli(*args, timeout=120)
        attempts[" ".join(args)] = p.returncode
        w.event(f"minority {lone.node}: etcdward {' '.join(args)} -> rc {p.returncode} after "
                f"{time.monotonic() - t:.1f}s: {(p.stdout + p.stderr).strip()[-300:]}")
    # the majority goes on: all three still members, a new reconciler leader among them
    time.sleep(LEASE_TTL + 2)
    for h in majority:
        names = sorted(m["name"] for m in h.members()[1])
        assert names == sorted(w.names()), f"{h.node} sees {names} while {lone.node} is cut off"
    new_leader = wait_until(lambda: (n := w.reconciler_leader(majority[0])) and n != lone.node and n, 60,
                            "a reconciler leader in the majority")
    w.event(f"majority reconciler leader: {new_leader}")
    w.heal(lone)
    time.sleep(3 * LEASE_TTL)  # a deferred leave would be acted on by now
    removed = lone.returncode() is not None or not any(
        m["name"] == lone.node for m in majority[0].members()[1])
    removals = count_lines(w, f"removed member {lone.node} (id")
    w.event(f"after heal: attempts {attempts}, removed={removed}, removal lines {removals}")
    if any(rc == 0 for rc in attempts.values()) and not removed:
        # acknowledged but deferred: it has to happen now that the minority is healed
        wait_until(lambda: lone.returncode() is not None, 60, f"deferred leave of {lone.node}")
        removed = True
    assert removals <= 1, f"leave of {lone.node} applied {removals} times"
    if removed:
        wait_until(lambda: lone.returncode() is not None, 60, f"{lone.node} exits after its removal")
        assert lone.returncode() == 0 and lone.tombstone().exists()
        w.wait_voters({h.node for h in majority}, timeout=120, via=majority)
        rejoin(w, lone, majority[0])
        w.wait_voters(w.names(), timeout=180)
        time.sleep(2 * LEASE_TTL)
        assert count_lines(w, f"removed member {lone.node} (id") == 1, "leave applied twice"
    else:
        assert lone.alive(), f"{lone.node} stopped although it was not removed:\n{tail(lone.log_file)}"
    # whatever happened, its record ends Joined=True (it is a member)
    rec = wait_until(lambda: (r := record(majority[0], lone.node)) and joined(r) is True and r, 60,
                     f"record {lone.node} Joined=True")
    w.event(f"record {lone.node}: spec {rec.get('spec')}, status {rec.get('status')}")
    w.check_invariants(w.names())



def test_leave_deferred_by_minority(world) -> None:
    """One member is cut off (a minority of one) when another member is asked to leave: the
    quorum guard refuses while the cut-off member cannot count as healthy; after the heal the
    leave is applied, exactly once, and the member rejoins for good."""
    w = world(3)
    form(w)
    w.wait_voters(w.names(), timeout=180)
    leader = w[wait_until(lambda: w.reconciler_leader(), 30, "a reconciler leader")]
    cut, leaving = [h for h in w.hosts.values() if h is not leader]
    w.partition(cut)  # and ask at once: the cut-off member's last liveness report is still fresh
    p = leader.cli("patch", "etcdmember", leaving.node, "--leave")
    assert p.returncode == 0, p.stderr
    w.event(f"{leader.node}: patch etcdmember {leaving.node} --leave while {cut.node} is cut off: {p.stdout.strip()}")
    # while cut off: removing `leaving` would leave 1 healthy voter of 2: refused, recorded
    rec = wait_until(lambda: (r := record(leader, leaving.node)) and r["status"].get("reconcileStatus") == "Failed"
                     and r, 60, f"leave of {leaving.node} refused while {cut.node} is cut off",
                     detail=lambda: str(record(leader, leaving.node)))
    w.event(f"refused: {rec['status'].get('message')}")
    time.sleep(LEASE_TTL)
    members = sorted(m["name"] for m in leader.members()[1])
    assert members == sorted(w.names()), f"{leaving.node} was removed while {cut.node} was cut off: {members}"
    assert leaving.alive()
    w.heal(cut)
    # healed: the deferred leave goes through, once
    wait_until(lambda: leaving.returncode() is not None, 90, f"{leaving.node} removed after the heal",
               detail=lambda: str(record(leader, leaving.node)))
    assert leaving.returncode() == 0 and leaving.tombstone().exists(), tail(leaving.log_file)
    rest = [leader, cut]
    w.wait_voters({h.node for h in rest}, timeout=120, via=rest)
    assert count_lines(w, f"removed member {leaving.node} (id") == 1
    rejoin(w, leaving, leader)
    w.wait_voters(w.names(), timeout=180)
    time.sleep(2 * LEASE_TTL)
    w.wait_voters(w.names(), timeout=30)
    assert count_lines(w, f"removed member {leaving.node} (id") == 1, "leave applied twice"
    w.check_invariants(w.names())
