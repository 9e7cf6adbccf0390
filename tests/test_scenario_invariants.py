"""Scenario invariant 3 (records == members, tests/scenarios/invariants.py) on fake hosts: a
records CLI that fails is a violation, never a skipped check.  No namespaces, no etcd."""
from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.scenarios.invariants import check_records

MEMBERS = [{"id": "8e9e05c52164694d", "name": "n1"}]


class FakeWorld:
    def __init__(self) -> None:
        self.violations: list[str] = []

    def violation(self, msg: str) -> None:
        self.violations.append(msg)


class FakeHost:
    node = "n1"

    def __init__(self, rc: int, stdout: str = "", stderr: str = "") -> None:
        self.answer = subprocess.CompletedProcess(["etcdward"], rc, stdout, stderr)
        self.calls: list[tuple[str, ...]] = []

    def cli(self, *args: str, **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return self.answer


def record(name: str, member_id: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "status": {"memberID": member_id, "conditions": [{"type": "Joined", "status": "True"}]}}


def test_a_failing_records_cli_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(*a: Any, **kw: Any) -> None:
        raise AssertionError(f"invariant 3 ran a command of its own (a probe deciding whether to check?): {a}")

    monkeypatch.setattr(subprocess, "run", no_probe)
    w, h = FakeWorld(), FakeHost(2, stderr="Error: No such command 'get'.")
    check_records(w, [h], MEMBERS, timeout=0.1)  # type: ignore[arg-type]
    assert h.calls and h.calls[0][:2] == ("get", "etcdmembers")
    assert len(w.violations) == 1, w.violations
    assert "get etcdmembers failed" in w.violations[0] and "No such command" in w.violations[0]


def test_unparsable_records_output_is_a_violation() -> None:
    w = FakeWorld()
    check_records(w, [FakeHost(0, stdout="not json")], MEMBERS, timeout=0.1)  # type: ignore[list-item]
    assert len(w.violations) == 1 and "records == members" in w.violations[0], w.violations


def test_matching_records_pass() -> None:
    w = FakeWorld()
    out = json.dumps({"items": [record("n1", "8E9E05C52164694D")]})
    got = check_records(w, [FakeHost(0, stdout=out)], MEMBERS, timeout=0.1)  # type: ignore[list-item]
    assert w.violations == [] and [r["metadata"]["name"] for r in got] == ["n1"]
