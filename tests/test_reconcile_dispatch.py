"""The reconcile loop's dispatch, without etcd: each action kind has a handler that makes its
store call, and a pass applies the first action etcd accepts."""

from __future__ import annotations

import asyncio

from etcdward.reconcile import rules
from etcdward.reconcile.loop import Reconciler
from etcdward.reconcile.rules import Snapshot
from etcdward.store import errors as E
from tests.test_reconcile_rules import M1, M2, member, record, snap


def test_a_refused_promotion_does_not_hold_back_the_next_action() -> None:
    """The loop applies the first action etcd accepts (apply() stands in for etcd's answers)."""
    m2 = member(2, learner=True)
    dup = record(M1, name="n1.example.org", rev=20)
    s = snap([M1, m2], [record(M1), dup])
    rec = Reconciler(store=None)  # type: ignore[arg-type]
    applied: list[str] = []

    async def snapshot() -> Snapshot:
        return s

    async def apply(a: rules.Action) -> str | None:
        if a.kind == "promote":
            return "etcd refused it for now (learner not in sync)"
        applied.append(a.kind)
        return None

    rec.snapshot = snapshot  # type: ignore[method-assign]
    rec.apply = apply  # type: ignore[method-assign]
    result = asyncio.run(rec.run_pass())
    message, done = result.message, result.done
    assert applied == ["delete-duplicate"]
    assert done is not None and message.startswith("deleted duplicate record n1.example.org")

    rec.leading = lambda: False  # a leader that lost its lease acts on nothing
    applied.clear()
    result = asyncio.run(rec.run_pass())
    assert applied == [] and result.done is None and "leadership not confirmed" in result.message
    assert result.waiting


class RecordingStore:
    """Stands in for etcd in the dispatch test only: records which store call each action makes
    (the calls themselves are exercised against real etcd in test_reconcile_cluster.py)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail = fail

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        async def call(*args: object, **kw: object) -> object:
            self.calls.append((name, args[0] if args else None))
            if self.fail is not None:
                raise self.fail
            return None if name == "get" else True  # get: no such key
        return call


def test_every_action_kind_has_a_handler_that_makes_its_store_call() -> None:
    assert set(Reconciler.HANDLERS) == set(rules.Kind)
    rec_n2 = record(M2)
    expected = {
        rules.Kind.PROMOTE: [("promote", 2)],
        rules.Kind.REMOVE_STALLED_LEARNER: [("remove_member", 2), ("delete", "/etcdward/joins/2")],
        rules.Kind.FORGET_JOIN: [("delete", "/etcdward/joins/2")],
    }
    for kind, calls in expected.items():
        store = RecordingStore()
        assert asyncio.run(Reconciler(store).apply(rules.Action(kind, 2, "x"))) is None  # type: ignore[arg-type]
        assert store.calls == calls, kind
    store = RecordingStore()
    asyncio.run(Reconciler(store).apply(rules.Action(rules.Kind.REMOVE_MEMBER, 2, "x", rec_n2)))  # type: ignore[arg-type]
    assert store.calls[0] == ("remove_member", 2)
    # etcd refusing for now is a reason to wait, not an error; "already done" counts as done
    for exc, want in ((E.LearnerNotReady("not in sync"), "etcd refused it for now"), (E.MemberNotFound("gone"), None)):
        why = asyncio.run(Reconciler(RecordingStore(exc)).apply(  # type: ignore[arg-type]
            rules.Action(rules.Kind.PROMOTE, 2, "x")))
        assert (why is None) if want is None else (why is not None and why.startswith(want)), why
