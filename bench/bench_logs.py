"""Log parsing for the formation benchmark: when did each step happen (etcd and controller logs)."""

from __future__ import annotations

import datetime as dt
import re
import statistics
from pathlib import Path
from typing import Any

from .bench_procs import Node

# -- what n1's etcd saw (same source for both sides) ------------------------------------------

ETCD_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) \w \| (.*)$")
ETCD_EVENTS = (
    (re.compile(r"added member ([0-9a-f]+) \[([^\]]+)\]"), "add"),
    (re.compile(r"rafthttp: peer ([0-9a-f]+) became active"), "active"),
    (re.compile(r"promote member ([0-9a-f]+)"), "promote"),
)


def etcd_events(log: Path, t0_wall: float, names: dict[str, str]) -> list[tuple[float, str, str]]:
    """(t - t0, kind, node name) for learner adds, peer connections and promotions, read from
    n1's etcd log (n1 leads throughout a formation unless an election moves it)."""
    ids: dict[str, str] = {}
    out: list[tuple[float, str, str]] = []
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = ETCD_LINE.match(line)
        if not m:
            continue
        for rx, kind in ETCD_EVENTS:
            e = rx.search(m.group(2))
            if not e:
                continue
            if kind == "add":
                ids[e.group(1)] = names.get(e.group(2), e.group(2))
            name = ids.get(e.group(1))
            if name and name != "n1":
                ts = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                if kind != "active" or not any(k == "active" and n == name for _, k, n in out):
                    out.append((ts - t0_wall, kind, name))
            break
    return out


def phases(ev: list[tuple[float, str, str]], total: float) -> dict[str, float]:
    """Split t0 -> all voting into: until the first learner add; the chain of adds (each one
    waits for etcd's ~5 s `unhealthy cluster` gate counted from the previous learner's peer
    connection) split into add->peer active and active->next add; last add -> all voting."""
    adds = [(t, n) for t, k, n in ev if k == "add"]
    act = {n: t for t, k, n in ev if k == "active"}
    prom = {n: t for t, k, n in ev if k == "promote"}
    if not adds or any(n not in act for _, n in adds):
        return {}
    out = {"first_add": adds[0][0], "last_add_to_done": total - adds[-1][0]}
    out["add_to_active"] = statistics.mean(act[n] - t for t, n in adds)
    out["active_to_promote"] = statistics.mean(prom[n] - act[n] for _, n in adds if n in prom)
    if len(adds) > 1:
        out["active_to_next_add"] = statistics.mean(adds[i + 1][0] - act[adds[i][1]] for i in range(len(adds) - 1))
        out["add_to_next_add"] = (adds[-1][0] - adds[0][0]) / (len(adds) - 1)
    return out


# -- etcdward ----------------------------------------------------------------------------------

STARTUP_KEYS = (
    ("n1_py", "n1 launch -> n1's first log line (Python start-up, imports)"),
    ("n1_ready", "n1 launch -> n1's etcd answers a linearizable read (seen by the bench)"),
    ("n1_self_lag", "bench sees n1 ready -> n1's controller logs `etcd ready`"),
    ("n1_api_lag", "bench sees n1 ready -> n1's join API listening"),
    ("joiner_py", "token ready + joiners launched -> first joiner's first log line"),
    ("joiner_to_post", "that first log line -> the first `joining via` (decision, imports, CA fetch set-up)"),
    ("post_to_add", "first `joining via` -> first learner added (etcd log)"),
    ("conn_retries", "join retries after connection errors (all joiners)"),
)


def startup_phases(events: list[tuple[float, str]], eev: list[tuple[float, str, str]]) -> dict[str, float]:
    def first(pred: Any) -> float | None:
        return next((t for t, what in events if pred(what)), None)

    n1_dec, n1_ready = first(lambda w: w == "n1: decision"), first(lambda w: w == "bench: n1 ready")
    n1_self, n1_api = first(lambda w: w == "n1: etcd ready (voter)"), first(lambda w: w == "n1: join API up")
    tok = first(lambda w: w == "bench: token ready")
    j_dec = first(lambda w: w.endswith(": decision") and not w.startswith("n1:"))
    j_ask = first(lambda w: w.endswith(": join: asking"))
    add = next((t for t, k, _ in eev if k == "add"), None)
    out: dict[str, float] = {"conn_retries": float(sum(1 for _, w in events if "join: retry (Connect" in w))}
    for key, a, b in (("n1_py", 0.0, n1_dec), ("n1_ready", 0.0, n1_ready), ("n1_self_lag", n1_ready, n1_self),
                      ("n1_api_lag", n1_ready, n1_api), ("joiner_py", tok, j_dec), ("joiner_to_post", j_dec, j_ask),
                      ("post_to_add", j_ask, add)):
        if a is not None and b is not None:
            out[key] = b - a
    return out


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+)\s+([\w.]+): (.*)$")
INTERESTING = (
    ("start decision", "decision"),
    ("joining via", "join: asking"),
    ("retrying in", "join: retry"),
    ("join accepted", "join: accepted"),
    ("etcd started", "etcd launched"),
    ("etcd ready", "etcd ready (voter)"),
    ("join API listening", "join API up"),
    ("now the reconciler leader", "reconciler leader"),
    ("added learner", "ADDED"),
    ("reconcile: promoted learner", "PROMOTED"),
)


def controller_events(node: Node, log: Path, t0_wall: float) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = LOG_LINE.match(line)
        if not m:
            continue
        ts = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        msg = m.group(4)
        for needle, label in INTERESTING:
            if needle in msg:
                detail = ""
                if label in ("ADDED", "PROMOTED"):
                    detail = " " + msg.split("learner ", 1)[1].split(" ", 1)[0]
                elif label == "join: retry":
                    detail = " (" + msg.split(": ", 1)[-1][:90] + ")"
                out.append((ts - t0_wall, f"{node.name}: {label}{detail}"))
                break
    return out


