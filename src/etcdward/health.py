"""/livez, /readyz and the figures /metrics reads at scrape time (served by api.py; no
credential, nothing secret).

    /livez    one check per running loop (heartbeats.py): fails naming the loop that stalled
    /readyz   etcd: the local etcd answers a linearizable read
              voter: this member is in the etcd member list, started and not a learner
    ?verbose  every check as Kubernetes prints them: `[+]name ok` / `[-]name failed: reason`,
              then `livez check passed` / `readyz check failed`

Status 200 when every check passes, else 503 with the failed checks in the body (Kubernetes
withholds the reasons; ours are not secret, and an operator needs them).

The API, and so these endpoints, runs only once this member is a voter (node.py starts the voter
services after its etcd passed a linearizable read): /readyz then fails while the local etcd
does not answer (stopped, restarting, no quorum) and in the moment between this member's
removal and its controller noticing it (selfwatch.py).

The cluster figures of /metrics (leader flag, members by role, who reports, learner ages, the
join queue, active alarms) are read when Prometheus scrapes, not polled: no etcd traffic without
a scraper. So are this node's certificate expiries (from pki/: a renewal by `etcdward certs
renew` shows at the next scrape).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .certexpiry import node_certificates
from .heartbeats import Heartbeats
from .keys import JOIN_QUEUE
from .memberreport import alarms_in
from .membership import alive_members
from .metrics import ALARMS, Metrics
from .paths import DataDir
from .store import Member, Store
from .store import errors as E

SCRAPE_TIMEOUT = 3.0  # etcd reads for one scrape; a scrape must answer even when etcd does not


@dataclass(frozen=True)
class Check:
    name: str
    failure: str | None = None  # None: passed


def render(endpoint: str, checks: list[Check], verbose: bool) -> tuple[int, str]:
    """(status code, body) in the Kubernetes /livez and /readyz text format."""
    failed = any(c.failure for c in checks)
    if not failed and not verbose:
        return 200, "ok\n"
    lines = [f"[+]{c.name} ok" if c.failure is None else f"[-]{c.name} failed: {c.failure}" for c in checks]
    lines.append(f"{endpoint} check {'failed' if failed else 'passed'}")
    return (503 if failed else 200), "\n".join(lines) + "\n"


def voter_failure(members: list[Member], name: str, member_id: int) -> str | None:
    """Why this member is not a started voter, or None."""
    me = next((m for m in members if m.id == member_id), None)
    who = f"member {name} (id {member_id:x})"
    if me is None:
        return f"{who} is not in the etcd member list (it was removed)"
    if me.is_learner:
        return f"{who} is a learner, not promoted yet"
    if not me.started:
        return f"{who} has not started"
    return None


@dataclass
class Health:
    store: Store
    name: str
    member_id: int
    heartbeats: Heartbeats
    metrics: Metrics
    data: DataDir | None = None  # its pki/: the certificate expiries (None: not exported)
    learners_seen: dict[int, float] = field(default_factory=dict)  # learner id -> monotonic first seen

    def live(self) -> list[Check]:
        return [Check(name, why) for name, why in self.heartbeats.checks()]

    async def ready(self) -> tuple[list[Check], list[Member] | None]:
        """The readiness checks, and the member list they read (None if it could not be read)."""
        read, listed = await asyncio.gather(self.store.ready(), self.store.members(timeout=2.0),
                                            return_exceptions=True)
        etcd = Check("etcd", None if read is None else f"etcd did not answer a linearizable read: {read}")
        if isinstance(listed, BaseException):
            return [etcd, Check("voter", f"cannot read the etcd member list: {listed}")], None
        return [etcd, Check("voter", voter_failure(listed, self.name, self.member_id))], listed

    async def scrape(self) -> None:
        """Bring the scrape-time gauges up to date (best effort: what etcd cannot tell now is
        dropped, never left stale)."""
        m = self.metrics
        self._loops()
        self._certificates()
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                checks, members = await self.ready()
                m.ready.set(0 if any(c.failure for c in checks) else 1)
                if members is None:
                    raise E.Unavailable("no member list")
                status, alive, (queue, _) = await asyncio.gather(
                    self.store.status(timeout=2.0), alive_members(self.store), self.store.get_prefix(JOIN_QUEUE))
        except (E.StoreError, TimeoutError):
            m.ready.set(0)
            m.etcd_leader.set(0)
            for gauge in (m.cluster_members, m.member_reporting, m.learner_age, m.etcd_alarms):
                gauge.clear()
            return
        m.etcd_leader.set(1 if status.leader_id == status.member_id else 0)
        m.join_queue_length.set(len(queue))
        self._members(members, alive)
        self._alarms(status.errors)

    def _alarms(self, errors: tuple[str, ...] | list[str]) -> None:
        """Members per active alarm; NOSPACE and CORRUPT always have a series (0: none)."""
        count = dict.fromkeys(ALARMS, 0)
        for _, alarm in alarms_in(errors):
            count[alarm] = count.get(alarm, 0) + 1
        self.metrics.etcd_alarms.clear()
        for alarm, n in count.items():
            self.metrics.etcd_alarms.labels(alarm).set(n)

    def _certificates(self) -> None:
        m = self.metrics
        m.certificate_expiry.clear()
        m.certificate_renewal_due.clear()
        if self.data is None:
            return
        for c in node_certificates(self.data):
            if c.not_after is not None:
                m.certificate_expiry.labels(c.name).set(c.not_after.timestamp())
            if c.renewal_due is not None:
                m.certificate_renewal_due.labels(c.name).set(c.renewal_due.timestamp())

    def _members(self, members: list[Member], alive: frozenset[int]) -> None:
        m, now = self.metrics, time.monotonic()
        m.cluster_members.labels("voter").set(sum(1 for x in members if not x.is_learner))
        m.cluster_members.labels("learner").set(sum(1 for x in members if x.is_learner))
        m.member_reporting.clear()
        for x in members:
            if not x.is_learner:
                m.member_reporting.labels(x.name or "(unstarted)", x.hex_id).set(1 if x.id in alive else 0)
        learners = {x.id: x for x in members if x.is_learner}
        self.learners_seen = {i: self.learners_seen.get(i, now) for i in learners}
        m.learner_age.clear()
        for i, x in learners.items():
            m.learner_age.labels(x.name or "(unstarted)", x.hex_id).set(now - self.learners_seen[i])

    def _loops(self) -> None:
        m = self.metrics
        m.loop_heartbeat_age.clear()
        m.loop_stalled.clear()
        for name, hb in sorted(self.heartbeats.beats.items()):
            m.loop_heartbeat_age.labels(name).set(hb.age())
            m.loop_stalled.labels(name).set(0 if hb.stalled() is None else 1)


def verbose(query: Any) -> bool:
    """`?verbose` (any value, or none) asks for every check."""
    return "verbose" in query
