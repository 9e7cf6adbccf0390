"""The leader-elected reconcile loop: wake -> snapshot -> decide -> apply one action -> log.

It wakes on a timer (fast while a learner is pending, so a learner is promoted within a
fraction of a second of etcd accepting it) and on `wakeup` (set by the watch task)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from ..join.server import JOINS
from ..store import Store
from ..store import errors as E
from . import rules
from .election import Election

if TYPE_CHECKING:
    from ..node import Controller

log = logging.getLogger(__name__)

FAST = 0.1  # while a learner is pending
SLOW = 1.0  # the member list is polled at least this often


class Reconciler:
    def __init__(self, store: Store, learner_timeout: float = 300.0) -> None:
        self.store = store
        self.learner_timeout = learner_timeout
        self.first_seen: dict[int, float] = {}
        self.wakeup = asyncio.Event()
        self.last_message = ""

    async def snapshot(self) -> rules.Snapshot:
        members = await self.store.members()
        kvs, _ = await self.store.get_prefix(JOINS)
        joins = {}
        for kv in kvs:
            try:
                d = json.loads(kv.value)
                joins[int(kv.key.removeprefix(JOINS), 16)] = rules.JoinInfo(d["node"], d["peerURL"], float(d["added"]))
            except (ValueError, KeyError):
                continue
        now = time.time()
        live = {m.id for m in members if m.is_learner and not m.started}
        self.first_seen = {mid: self.first_seen.get(mid, now) for mid in live}
        return rules.Snapshot(members=tuple(members), joins=joins, now=now, learner_timeout=self.learner_timeout,
                              first_seen=dict(self.first_seen))

    async def apply(self, a: rules.Action) -> bool:
        """True if applied; False if etcd said "not yet" (the next pass tries again)."""
        try:
            if a.kind == "promote":
                await self.store.promote(a.member_id)
            elif a.kind == "remove-stalled-learner":
                await self.store.remove_member(a.member_id)
                await self.store.delete(JOINS + format(a.member_id, "x"))
            elif a.kind == "forget-join":
                await self.store.delete(JOINS + format(a.member_id, "x"))
            else:
                raise ValueError(a.kind)
        except (E.LearnerNotReady, E.UnhealthyCluster, E.NotEnoughStarted, E.LeaderChanged):
            return False
        except (E.MemberNotLearner, E.MemberNotFound):
            return True  # somebody else already did it
        return True

    async def run_pass(self) -> tuple[str, rules.Snapshot]:
        snap = await self.snapshot()
        actions = rules.decide(snap)
        if not actions:
            return rules.idle_message(snap), snap
        a = actions[0]
        if await self.apply(a):
            return a.message, snap
        return f"waiting: {a.message.split(' ', 1)[1]} not accepted by etcd yet", snap

    def log_decision(self, message: str) -> None:
        # "no action"/"waiting" lines repeat every pass; log them only when they change.
        quiet = message.startswith(("no action", "waiting"))
        if not quiet or message != self.last_message:
            log.log(logging.DEBUG if message.startswith("waiting") else logging.INFO, "reconcile: %s", message)
        self.last_message = message

    async def lead(self, election: Election) -> None:
        while await election.still_leader():
            try:
                message, snap = await self.run_pass()
            except E.StoreError as e:
                message, snap = f"waiting: etcd unavailable ({e})", None
            self.log_decision(message)
            pending = snap is not None and any(m.is_learner for m in snap.members)
            acted = not message.startswith(("no action", "waiting"))
            delay = 0 if acted else (FAST if pending or snap is None else SLOW)
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), delay)
            except asyncio.TimeoutError:
                pass


async def run_reconciler(ctl: "Controller") -> None:
    assert ctl.store is not None and ctl.ident is not None
    rec = Reconciler(ctl.store, learner_timeout=ctl.cfg.spec.reconciler.learner_start_timeout)
    election = Election(ctl.store, ctl.ident.name, ctl.ident.member_id or "", ttl=ctl.cfg.spec.reconciler.lease_ttl)
    try:
        while True:
            await election.campaign()
            await rec.lead(election)
            log.warning("%s lost the reconciler leadership", ctl.ident.name)
    finally:
        await election.resign()
