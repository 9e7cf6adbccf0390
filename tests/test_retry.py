"""The one retry helper: what it retries, how long it waits, and that it keeps its deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from etcdward.errors import Permanent, Temporary
from etcdward.retry import retry


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_temporary_is_retried_until_success() -> None:
    calls = []

    async def op() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise Temporary("not yet")
        return "ok"

    assert run(retry(op, deadline=5, backoff=(0.05,))) == "ok"
    assert len(calls) == 3


def test_permanent_and_foreign_errors_stop_at_once() -> None:
    for exc in (Permanent("no"), ValueError("bug")):
        calls = []

        async def op() -> None:
            calls.append(1)
            raise exc

        with pytest.raises(type(exc)):
            run(retry(op, deadline=5, backoff=(0.05,)))
        assert calls == [1]


def test_retry_after_is_honoured_and_absurd_values_are_not() -> None:
    waits: list[float] = []

    async def op() -> None:
        raise Temporary("busy", after=[0.3, float("nan"), -1, 1e9][len(waits)] if len(waits) < 4 else 0.1)

    with pytest.raises(Temporary):
        run(retry(op, deadline=1.2, backoff=(0.1,), jitter=0, on_retry=lambda e, n, d: waits.append(d)))
    assert waits[0] == pytest.approx(0.3)
    assert all(w == pytest.approx(0.1) or w < 0.1 for w in waits[1:4])


def test_deadline_is_kept_in_full_with_a_last_attempt() -> None:
    calls = []

    async def op() -> None:
        calls.append(time.monotonic())
        raise Temporary("down")

    t0 = time.monotonic()
    with pytest.raises(Temporary):
        run(retry(op, deadline=0.5, backoff=(0.2,), jitter=0))
    took = time.monotonic() - t0
    assert 0.5 <= took < 0.8
    assert calls[-1] - t0 >= 0.45  # the last attempt is at the deadline, not one backoff before it
