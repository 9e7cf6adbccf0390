"""The invariants of issue 5, checked after every scenario, and the records CLI helpers."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from etcdward.procs import cmdline, running

from .common import BOOTSTRAP_LINE, ScenarioError, ppid_of, wait_until
from .host import Host

if TYPE_CHECKING:
    from .harness import World


@dataclass
class Checked:
    """What check_invariants saw, for the caller and the events log."""
    cluster_id: str = ""
    members: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    acked_writes: int = 0
    notes: list[str] = field(default_factory=list)


def check_invariants(w: "World", expected: Iterable[str], timeout: float = 120.0, bootstrapper: str = "n1",
                     stop_all: bool = True) -> Checked:
    """The five invariants of issue 5 for the hosts named in `expected` (all must be live
    voters), plus: only `bootstrapper` ever decided BOOTSTRAP, and only once.
    With stop_all, every controller is then stopped and no etcd may remain (invariant 5)."""
    want = set(expected)
    hosts = [w.hosts[n] for n in sorted(want)]
    res = Checked()
    # (1) + (2): one cluster ID, the same member list everywhere, equal to `expected`
    w.wait_voters(want, timeout=timeout, via=hosts)

    def agree() -> bool:
        ids, views = {}, {}
        for h in hosts:
            cid, ms = h.members()
            st = h.status()
            ids[h.node] = {cid, st["cluster_id"]}
            views[h.node] = json.dumps(ms, sort_keys=True)
        all_ids = set().union(*ids.values())
        if len(all_ids) != 1:
            raise ScenarioError(f"cluster IDs differ: {ids}")
        if len(set(views.values())) != 1:
            raise ScenarioError(f"member lists differ: {views}")
        res.cluster_id = all_ids.pop()
        res.members = json.loads(next(iter(views.values())))
        return True

    wait_until(agree, timeout, "one cluster ID and one member list on every node", interval=1.0)
    for h in hosts:  # the pinned identity agrees with etcd
        ident = h.identity() or {}
        if ident.get("clusterID") not in (None, res.cluster_id):
            w.violation(f"{h.node}: identity.json pins cluster {ident.get('clusterID')}, etcd says {res.cluster_id}")
    names = [m["name"] for m in res.members]
    if len(set(names)) != len(names) or set(names) != want:
        w.violation(f"member names {names} != expected {sorted(want)}")
    # the product's own view (k0s format) agrees with etcdctl's
    p = hosts[0].cli("etcd", "member-list")
    k0s_view = {m["name"]: m["peerURLs"][0] for m in res.members}
    if p.returncode != 0 or json.loads(p.stdout or "{}").get("members") != k0s_view:
        w.violation(f"`etcdward etcd member-list` on {hosts[0].node}: rc {p.returncode} "
                       f"{(p.stdout or p.stderr).strip()[-300:]} != {k0s_view}")
    # other nodes that still run etcd must not be in some other cluster
    for h in w.hosts.values():
        if h.node not in want and h.etcd_pid():
            try:
                cid = h.status()["cluster_id"]
            except ScenarioError:
                continue
            if cid != res.cluster_id:
                w.violation(f"{h.node} runs etcd of another cluster {cid} (main cluster {res.cluster_id})")
    # (3) records == members
    res.records = check_records(w, hosts, res.members, timeout=min(timeout, 60.0))
    # (4) no acknowledged write lost
    if w.writer is not None:
        w.writer.stop()
        acked = set(w.writer.acked)
        res.acked_writes = len(acked)
        for h in hosts:
            missing = acked - w.writer.present(h)
            if missing:
                some = sorted(missing)[:10]
                w.violation(f"{h.node}: {len(missing)} acknowledged writes missing, e.g. {some} "
                            f"(acked via {[w.writer.acked[s] for s in some]})")
        w.event(f"writer: {len(acked)} acknowledged, {w.writer.failed} failed attempts, read back on "
                   f"{[h.node for h in hosts]}")
        if len(acked) == 0:
            w.violation("the writer got no write acknowledged at all")
    # extra: nobody but the bootstrapper ever bootstrapped
    for h in w.hosts.values():
        n = len(h.log_lines(BOOTSTRAP_LINE))
        if h.node == bootstrapper and n != 1:
            w.violation(f"{h.node}: {n} BOOTSTRAP decisions (want exactly 1)")
        elif h.node != bootstrapper and n:
            w.violation(f"{h.node} decided BOOTSTRAP ({n}x): a second cluster")
    # (5) no orphan etcd
    check_processes(w, )
    if stop_all:
        w.stop_all()
        check_processes(w, expect_none=True)
    for h in w.hosts.values():  # not a failure by itself, but worth a look in the artifacts
        tracebacks = len(h.log_lines("Traceback (most recent call last)"))
        if tracebacks:
            res.notes.append(f"{h.node}: {tracebacks} Python tracebacks in {h.log_file.name}")
    w.event(f"invariants checked: cluster {res.cluster_id}, {len(res.members)} members, "
               f"{res.acked_writes} acked writes, notes {res.notes}")
    for note in res.notes:
        print(f"[scenario] note: {note}")
    if w.violations:
        raise ScenarioError("invariant violations:\n  " + "\n  ".join(w.violations))
    return res

def check_records(w: "World", hosts: list[Host], members: list[dict[str, Any]], timeout: float = 60.0
                  ) -> list[dict[str, Any]]:
    """(3) One record per member (same member ID, Joined=True), no two records with one
    member ID, and a record whose member is gone is Joined=False.  Never skipped: a records
    CLI that fails (or does not exist) is a violation like any other mismatch."""
    member_ids = {m["id"]: m["name"] for m in members}
    seen: list[dict[str, Any]] = []

    def converged() -> bool:
        for h in hosts:
            items = get_records(h)
            seen[:] = items
            by_id: dict[str, list[str]] = {}
            for it in items:
                mid = (it.get("status") or {}).get("memberID") or ""
                by_id.setdefault(mid.lower(), []).append(it["metadata"]["name"])
            dups = {k: v for k, v in by_id.items() if k and len(v) > 1}
            if dups:
                raise ScenarioError(f"{h.node}: records share member IDs: {dups}")
            for mid, name in member_ids.items():
                recs = [it for it in items if ((it.get("status") or {}).get("memberID") or "").lower() == mid]
                if len(recs) != 1:
                    raise ScenarioError(f"{h.node}: member {name} ({mid}) has {len(recs)} records")
                if joined(recs[0]) is not True:
                    raise ScenarioError(f"{h.node}: record {recs[0]['metadata']['name']} of live member "
                                        f"{mid} is not Joined=True: {recs[0].get('status')}")
            for it in items:
                mid = ((it.get("status") or {}).get("memberID") or "").lower()
                if mid not in member_ids and joined(it) is True:
                    raise ScenarioError(f"{h.node}: record {it['metadata']['name']} (member {mid or '-'}) is "
                                        "Joined=True but not an etcd member")
        return True

    try:
        wait_until(converged, timeout, "records == members", interval=1.0)
    except ScenarioError as e:
        w.violation(str(e))
    return seen

def check_processes(w: "World", expect_none: bool = False) -> None:
    """(5) Each node runs at most one etcd, owned by its live controller; with expect_none
    (all controllers stopped) no etcd may be left at all."""
    for h in w.hosts.values():
        def clean() -> bool:
            pids = h.etcd_pids_in_node()
            if expect_none or not h.alive():
                if pids:
                    raise ScenarioError(f"{h.node}: etcd {pids} running without a controller")
                return True
            if len(pids) > 1:
                raise ScenarioError(f"{h.node}: {len(pids)} etcd processes {pids}")
            for p in pids:
                if ppid_of(p) != h.proc.pid:  # type: ignore[union-attr]
                    raise ScenarioError(f"{h.node}: etcd {p} has parent {ppid_of(p)}, not the controller "
                                        f"{h.proc.pid}")  # type: ignore[union-attr]
            return True

        try:
            wait_until(clean, 15, f"{h.node}: no orphan etcd", interval=0.5)
        except ScenarioError as e:
            w.violation(str(e))
    # anything else of ours anywhere on the machine (e.g. an etcd that left the netns? impossible,
    # but cheap to check): etcd processes whose data dir is under this scenario's folder
    mine = str(w.outdir) + "/"  # not a sibling folder that shares the prefix (xdist runs them side by side)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            argv = cmdline(pid)
            if argv and os.path.basename(argv[0]) == "etcd" and running(pid) and any(
                    a.startswith("--data-dir=" + mine) for a in argv):
                owner = next((h for h in w.hosts.values() if f"--data-dir={h.etcd_dir}" in argv), None)
                if owner is None or expect_none or not owner.alive():
                    w.violation(f"orphan etcd pid {pid}: {' '.join(argv[:3])}")


# ---- the records CLI (issue 4) ------------------------------------------------------------

def get_records(h: Host) -> list[dict[str, Any]]:
    p = h.cli("get", "etcdmembers", "-o", "json")
    if p.returncode != 0:
        raise ScenarioError(f"{h.node}: get etcdmembers failed: {p.stderr.strip()[-300:]}")
    doc = json.loads(p.stdout)
    return list(doc.get("items", []))


def joined(record: dict[str, Any]) -> bool | None:
    for c in (record.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Joined":
            return {"True": True, "False": False}.get(str(c.get("status")))
    return None

