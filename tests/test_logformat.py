"""Log lines: one per event, as text or as one JSON object (`--log-format json`). The formatters
unit by unit here; a real controller's JSON output in test_systemd_install.py."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdward.logformat import REQUIRED_KEYS, JsonFormatter, TextFormatter

RFC3339_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def record(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    r = logging.getLogger("etcdward.reconcile.loop").makeRecord(
        "etcdward.reconcile.loop", logging.INFO, __file__, 1, msg, args, exc_info, extra=extra)
    return r


def one_json_line(text: str) -> dict[str, object]:
    assert len(text.splitlines()) == 1 and "\n" not in text, repr(text)
    obj = json.loads(text)
    assert all(k in obj for k in REQUIRED_KEYS), obj
    return obj


def test_json_line_carries_the_membership_extras_and_any_other() -> None:
    r = record("promoted learner %s (%s)", "n2", "8e9e05c52164694d", member="n2", memberID="8e9e05c52164694d",
               action="promote", outcome="ok", attempt=2, peers=["a", "b"])
    obj = one_json_line(JsonFormatter().format(r))
    assert RFC3339_MS_UTC.fullmatch(str(obj["time"])), obj["time"]
    assert (obj["level"], obj["logger"]) == ("info", "etcdward.reconcile.loop")
    assert obj["message"] == "promoted learner n2 (8e9e05c52164694d)"
    assert {k: obj[k] for k in ("member", "memberID", "action", "outcome", "attempt", "peers")} == {
        "member": "n2", "memberID": "8e9e05c52164694d", "action": "promote", "outcome": "ok", "attempt": 2,
        "peers": ["a", "b"]}
    assert "error" not in obj and "traceback" not in obj


def test_json_line_without_extras_has_only_the_required_keys() -> None:
    assert list(one_json_line(JsonFormatter().format(record("plain")))) == list(REQUIRED_KEYS)


def test_an_extra_never_replaces_a_required_field_and_odd_values_are_strings() -> None:
    obj = one_json_line(JsonFormatter().format(record("m", level="spoofed", error="x", path=Path("/a"))))
    assert obj["level"] == "info" and obj["extra_level"] == "spoofed" and obj["extra_error"] == "x"
    assert obj["path"] == "/a"


def _raised() -> BaseException:
    try:
        raise ValueError("bad\nthing")
    except ValueError as e:
        return e


def test_exception_is_an_error_field_not_a_traceback() -> None:
    obj = one_json_line(JsonFormatter().format(record("failed", exc=_raised())))
    assert obj["error"] == "ValueError: bad\nthing" and "traceback" not in obj
    verbose = one_json_line(JsonFormatter(tracebacks=True).format(record("failed", exc=_raised())))
    assert "Traceback (most recent call last)" in str(verbose["traceback"])


def test_text_stays_todays_format_on_one_line() -> None:
    line = TextFormatter().format(record("moved %s\naside", "x", exc=_raised()))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    etcdward\.reconcile\.loop: "
                        r"moved x\\naside \(ValueError: bad\\nthing\)", line), line


@settings(max_examples=300, deadline=None)
@given(msg=st.text(), member=st.text(), other=st.one_of(st.integers(), st.floats(), st.text(), st.none()))
def test_any_message_stays_one_line(msg: str, member: str, other: object) -> None:
    r = record(msg, member=member, memberID="1", action="remove", outcome="failed", other=other)
    obj = one_json_line(JsonFormatter().format(r))
    assert obj["message"] == msg and obj["member"] == member
    text = TextFormatter().format(r)
    assert len(text.splitlines()) == 1 and "\n" not in text, repr(text)


def test_controller_refusing_to_start_says_so_in_one_json_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec:\n  bogus: 1\n")
    p = subprocess.run([sys.executable, "-m", "etcdward", "controller", "-c", str(bad), "--data-dir",
                        str(tmp_path / "d"), "--log-format", "json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stdout == ""
    obj = one_json_line(p.stderr.rstrip("\n"))
    assert obj["level"] == "error" and "spec.bogus: unknown key" in str(obj["message"]), obj
