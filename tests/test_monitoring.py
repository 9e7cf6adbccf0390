"""Monitoring: /livez /readyz /metrics on real controllers, the alert rules and the dashboard.

One module-scoped cluster: n1 bootstraps, n2 joins with its liveness loop stalled by a test hook
(ETCDWARD_TEST_DELAY_AT=liveness-beat), so that n2's /livez must fail naming that loop while
everything else works. The etcd of n2 is stopped (SIGSTOP) last, for /readyz.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from etcdward.heartbeats import Heartbeats
from etcdward.memberops import MemberAction, MemberOps, Outcome
from etcdward.metrics import MEMBER_ACTIONS, MEMBER_OUTCOMES, Metrics
from etcdward.store import errors as E
from tests.cluster import Node, wait_for
from tests.join_helpers import shared_cluster
from tests.prereqs import needs

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "etcdward-dashboard.json"


def get(n: Node, path: str) -> httpx.Response:
    """Over HTTPS with the cluster CA, as Prometheus scrapes it; no credential."""
    ca = ssl.create_default_context(cafile=str(n.data.ca_crt))
    return httpx.get(f"https://{n.address}:9443{path}", verify=ca, trust_env=False, timeout=10)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series `name` whose labels include `labels`, if exported."""
    for m in re.finditer(rf"^{name}(?:\{{(.*)\}})? (\S+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    for c in shared_cluster(tmp_path_factory, "monitoring"):
        n1 = c.bootstrap("n1")
        n2 = c.node("n2", env={"ETCDWARD_TEST_DELAY_AT": "liveness-beat:3600"})
        n2.start(n1.token())
        c.wait_voters(n1, {"n1", "n2"}, timeout=60)
        wait_for(lambda: get(n2, "/readyz").status_code == 200, 30, "n2 API ready", node=n2)
        yield n1, n2


# -- endpoints on real controllers -------------------------------------------------------------

def test_livez_and_readyz_on_a_healthy_voter(nodes: tuple[Node, Node]) -> None:
    n1, _ = nodes
    r = get(n1, "/livez")
    assert (r.status_code, r.text) == (200, "ok\n")
    lines = get(n1, "/livez?verbose").text.splitlines()
    assert {"[+]liveness ok", "[+]reconciler ok", "[+]self ok", "[+]unstick ok", "[+]backup-status ok",
            "[+]certs ok", "[+]maintenance ok"} <= set(lines)  # n1 leads: its maintenance loop runs
    assert lines[-1] == "livez check passed" and all(line.startswith("[+]") for line in lines[:-1])
    assert "[+]certs ok" in lines  # the certificate renewer, on every voter
    if sample(get(n1, "/metrics").text, "etcdward_reconciler_leader") == 1:
        assert "[+]maintenance ok" in lines  # defrag and NOSPACE recovery, while leading
    r = get(n1, "/readyz")
    assert (r.status_code, r.text) == (200, "ok\n")
    assert get(n1, "/readyz?verbose").text == "[+]etcd ok\n[+]voter ok\nreadyz check passed\n"


def test_metrics_after_a_join_pass_promtool(nodes: tuple[Node, Node], tmp_path: Path) -> None:
    n1, n2 = nodes
    text = get(n1, "/metrics").text
    (tmp_path / "metrics.txt").write_text(text)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    # n1 served the join, added the learner and (leading the reconciler) promoted it
    assert sample(text, "etcdward_join_requests_total", outcome="joined") >= 1
    assert sample(text, "etcdward_membership_operations_total", action="add-learner", outcome="success") == 1
    assert sample(text, "etcdward_membership_operations_total", action="promote", outcome="success") == 1
    assert sample(text, "etcdward_membership_operation_duration_seconds_count", action="promote",
                  outcome="success") == 1
    assert sample(text, "etcdward_join_queue_wait_seconds_count") == 1
    assert sample(text, "etcdward_join_queue_length") == 0
    assert sample(text, "etcdward_reconcile_decisions_total", kind="promote") == 1
    assert sample(text, "etcdward_reconcile_passes_total", result="acted") >= 1
    assert sample(text, "etcdward_reconciler_leader") == 1 and sample(text, "etcdward_records_out_of_sync") == 0
    assert sample(text, "etcdward_etcd_leader") == 1 and sample(text, "etcdward_ready") == 1
    assert sample(text, "etcdward_cluster_members", role="voter") == 2
    assert sample(text, "etcdward_cluster_members", role="learner") == 0
    assert sample(text, "etcdward_member_reporting", member="n1") == 1
    assert sample(text, "etcdward_member_reporting", member="n2") == 0  # its liveness loop is stalled
    assert sample(text, "etcdward_etcd_restarts_total", reason="crash") == 0
    assert sample(text, "etcdward_build_info", etcd_version=str(n1.status().version)) == 1
    assert sample(text, "etcdward_backup_last_success_timestamp_seconds") == 0
    # maintenance and certificates (issue 14): every series an alert reads exists before its first event
    assert sample(text, "etcdward_etcd_alarms", alarm="NOSPACE") == 0 == sample(text, "etcdward_etcd_alarms",
                                                                                 alarm="CORRUPT")
    assert sample(text, "etcdward_defrag_operations_total", trigger="auto", outcome="failed") == 0
    assert sample(text, "etcdward_defrag_duration_seconds_count", trigger="nospace") == 0
    assert sample(text, "etcdward_nospace_recoveries_total", outcome="recovered") == 0
    assert sample(text, "etcdward_certificate_renewals_total", outcome="failed") == 0
    now = time.time()
    for cert in ("ca", "etcd-ca", "api", "etcd-server", "etcd-peer", "etcd-client"):
        assert now < sample(text, "etcdward_certificate_expiry_timestamp_seconds", cert=cert) < now + 3650 * 86400 + 60
    for leaf in ("api", "etcd-server", "etcd-peer", "etcd-client"):
        due = sample(text, "etcdward_certificate_renewal_due_timestamp_seconds", cert=leaf)
        assert now < due < sample(text, "etcdward_certificate_expiry_timestamp_seconds", cert=leaf)
    assert sample(text, "etcdward_certificate_renewal_due_timestamp_seconds", cert="ca") is None  # never renewed
    other = get(n2, "/metrics").text
    assert sample(other, "etcdward_reconciler_leader") == 0 and sample(other, "etcdward_etcd_leader") == 0
    assert sample(other, "etcdward_join_requests_total", outcome="joined") == 0


def test_readyz_fails_with_the_reason_when_the_local_etcd_is_stopped(nodes: tuple[Node, Node]) -> None:
    _, n2 = nodes
    pid = n2.etcd_pid()
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        r = get(n2, "/readyz")
        assert r.status_code == 503
        assert r.text.startswith("[-]etcd failed: etcd did not answer a linearizable read"), r.text
        assert r.text.endswith("readyz check failed\n")
        verbose = get(n2, "/readyz?verbose").text.splitlines()
        assert verbose[0].startswith("[-]etcd failed: ") and verbose[-1] == "readyz check failed"
        assert sample(get(n2, "/metrics").text, "etcdward_ready") == 0
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: get(n2, "/readyz").status_code == 200, 30, "n2 ready again", node=n2)


def test_a_stalled_loop_fails_livez_naming_it(nodes: tuple[Node, Node]) -> None:
    _, n2 = nodes
    r = wait_for(lambda: (r := get(n2, "/livez")).status_code == 503 and r, 40, "n2 /livez 503", node=n2)
    assert "[-]liveness failed: loop liveness stalled: no heartbeat for" in r.text
    assert "[+]self ok" in r.text and r.text.endswith("livez check failed\n")
    assert get(n2, "/readyz").status_code == 200  # a stalled loop is no reason to take it out of service
    m = get(n2, "/metrics").text
    assert sample(m, "etcdward_loop_stalled", loop="liveness") == 1 and sample(m, "etcdward_loop_stalled", loop="self") == 0


# -- the pieces, without etcd ------------------------------------------------------------------

def test_a_loop_is_stalled_only_past_its_bound() -> None:
    now = [100.0]
    beats = Heartbeats(clock=lambda: now[0])
    with beats.loop("poll", every=1.0, work=2.0) as hb:
        now[0] += 5.0
        assert beats.checks() == [("poll", None)]
        now[0] += 0.5
        assert beats.checks() == [("poll", "loop poll stalled: no heartbeat for 5.5s (bound 5.0s)")]
        hb.beat(next_in=60.0)  # a known long wait (a cool-down) moves the bound
        now[0] += 64.0
        assert beats.checks() == [("poll", None)]
    assert beats.checks() == []  # a loop that ended is not checked


def test_a_membership_operation_is_one_line_with_its_fields_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    assert [str(a) for a in MemberAction] == list(MEMBER_ACTIONS)
    assert [str(o) for o in Outcome] == list(MEMBER_OUTCOMES)
    metrics = Metrics(CollectorRegistry())
    ops = MemberOps(metrics)
    log = logging.getLogger("etcdward.test")

    async def go() -> None:
        async with ops.run(log, MemberAction.PROMOTE, "n2", 0xab, "reconcile: promoted learner n2 (id ab)"):
            pass
        for exc in (E.LearnerNotReady("not in sync"), E.MemberNotFound("gone"), E.Unavailable("timeout")):
            with pytest.raises(type(exc)):
                async with ops.run(log, MemberAction.REMOVE, "n3", 0xcd, "x", "reconcile: "):
                    raise exc

    with caplog.at_level(logging.DEBUG, logger="etcdward.test"):
        asyncio.run(go())
    got = [(r.getMessage(), r.member, r.memberID, r.action, r.outcome) for r in caplog.records]  # type: ignore[attr-defined]
    assert got == [
        ("reconcile: promoted learner n2 (id ab)", "n2", "ab", "promote", "success"),
        ("reconcile: remove of n3 (id cd): refused for now: not in sync", "n3", "cd", "remove", "refused"),
        ("reconcile: remove of n3 (id cd): already done: gone", "n3", "cd", "remove", "noop"),
        ("reconcile: remove of n3 (id cd): outcome unknown: timeout", "n3", "cd", "remove", "unknown"),
    ]
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.DEBUG, logging.INFO, logging.WARNING]
    assert metrics.membership_operations.labels("promote", "success")._value.get() == 1
    assert metrics.membership_operations.labels("remove", "refused")._value.get() == 1


# -- alert rules and dashboard -----------------------------------------------------------------

def exported_names() -> set[str]:
    """Every sample name a controller's /metrics can contain (metrics.py), and Prometheus' `up`."""
    names = {"up"}
    for family in Metrics(CollectorRegistry()).registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names.update(family.name + s for s in suffixes)
    return names


@needs("promtool")
def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    for argv in (["check", "rules", "etcdward-rules.yml"], ["test", "rules", "etcdward-rules.test.yml"],
                 ["check", "config", "scrape-config.example.yml"]):
        p = subprocess.run(["promtool", *argv], cwd=RULES, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"promtool {' '.join(argv)}:\n{p.stdout}{p.stderr}"


def test_dashboard_and_rules_use_only_exported_metric_names() -> None:
    exported = exported_names()
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\b(etcdward_[a-z_]+|up)\b", e)}
    assert used and used <= exported, used - exported
    assert {"etcdward_membership_operations_total", "etcdward_join_requests_total", "etcdward_reconciler_leader",
            "etcdward_records_out_of_sync", "etcdward_etcd_restarts_total"} <= used
    rules = (RULES / "etcdward-rules.yml").read_text()
    in_rules = set(re.findall(r"\b(etcdward_[a-z_]+)\b", rules)) - {"etcdward_backup"}
    assert in_rules <= exported, in_rules - exported
    scrape = (RULES / "scrape-config.example.yml").read_text()
    jobs = re.findall(r"job_name: (\S+)", scrape)
    # etcd's alerts select job=~".*etcd.*" (anchored): any name with "etcdward" in it would match
    assert jobs == ["ward-controllers"] and not re.fullmatch(r".*etcd.*", jobs[0])
    assert 'up{job="ward-controllers"}' in rules
