"""What each controller publishes about its own etcd member, next to its liveness key. Pure.

Client ports listen on 127.0.0.1 only, so nobody (no controller, no `etcdward status`) can ask
another member's etcd. Each voter's controller therefore reads its own etcd's Status RPC (a
local answer, no raft round) and publishes the figures in the body of /etcdward/alive/<member
id> (reconcile/election.py Liveness) - but only when something an operator acts on changed
(leader, term, errors and alarms, version, learner flag, quota) or REPORT_EVERY seconds passed
since the last put. It reads Status on a liveness beat only when the raft term (which every
lease renewal's answer carries) moved or REPORT_EVERY passed, so the other material figures
show within REPORT_EVERY. A put goes through raft and is fsynced on every member; the applied
index moves with every write (these puts included), so it alone is never a reason to write.

`reportedAt` is the publishing host's clock (unix seconds): readers compare it with their own
clock, so the age they show includes any difference between the two hosts' clocks.

Learners cannot write to etcd: their catch-up progress travels with the joiner's repeated join
request instead (join/client.py LearnerClaim, keys.JoinRecord).
"""

from __future__ import annotations

import re

from .frozen import frozen

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any

DEFAULT_QUOTA = 2 * 1024**3  # etcd's --quota-backend-bytes when it is not set (or set to 0)
REPORT_EVERY = 10.0  # seconds between two puts of unchanged figures
NEAR_QUOTA = 0.8  # a db at this share of its quota is worth a warning (and a put when it gets there)


@frozen
class MemberReport:
    raft_term: int
    raft_index: int
    raft_applied_index: int
    db_size: int
    db_size_in_use: int
    db_quota: int  # bytes; 0 = no quota
    leader: str  # the etcd leader's member ID (hex) as this member sees it; "0" = none
    is_learner: bool
    errors: tuple[str, ...]  # Status.errors: "etcdserver: no leader" and the cluster's alarms
    version: str
    reported_at: float

    def material(self) -> tuple[Any, ...]:
        """What, when it changes, is worth a put before REPORT_EVERY has passed."""
        return (self.raft_term, self.leader, self.is_learner, self.errors, self.version, self.db_quota,
                self.near_quota)

    @property
    def near_quota(self) -> bool:
        return bool(self.db_quota) and self.db_size >= NEAR_QUOTA * self.db_quota

    def to_dict(self) -> dict[str, Any]:
        return {"raftTerm": self.raft_term, "raftIndex": self.raft_index, "raftAppliedIndex": self.raft_applied_index,
                "dbSize": self.db_size, "dbSizeInUse": self.db_size_in_use, "dbQuota": self.db_quota,
                "leader": self.leader, "isLearner": self.is_learner, "errors": list(self.errors),
                "version": self.version, "reportedAt": round(self.reported_at, 3)}

    @classmethod
    def parse(cls, d: Any) -> MemberReport | None:
        """None for anything that is not a report (an older controller publishes none)."""
        if not isinstance(d, dict):
            return None
        try:
            ints = [int(d[k]) for k in ("raftTerm", "raftIndex", "raftAppliedIndex", "dbSize", "dbSizeInUse",
                                         "dbQuota")]
            errors = d.get("errors") or []
            if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
                return None
            return cls(*ints, str(d["leader"]), bool(d.get("isLearner")), tuple(errors), str(d.get("version") or ""),
                       float(d["reportedAt"]))
        except (KeyError, TypeError, ValueError):
            return None


def from_status(status: Any, quota: int, now: float) -> MemberReport:
    """The report of a store.Status (duck-typed: this module stays pure)."""
    return MemberReport(raft_term=status.raft_term, raft_index=status.raft_index,
                        raft_applied_index=status.raft_applied_index, db_size=status.db_size,
                        db_size_in_use=status.db_size_in_use, db_quota=status.db_size_quota or quota,
                        leader=format(status.leader_id, "x"), is_learner=status.is_learner,
                        errors=tuple(status.errors), version=status.version, reported_at=now)


def due(last: MemberReport | None, new: MemberReport, every: float = REPORT_EVERY) -> bool:
    """Whether `new` should be published, `last` being what was published last."""
    return last is None or new.material() != last.material() or new.reported_at - last.reported_at >= every


_ALARM = re.compile(r"memberID:(\d+)\s+alarm:(\w+)")


def alarms_in(errors: tuple[str, ...] | list[str]) -> list[tuple[int, str]]:
    """(member ID, alarm) from Status.errors, which lists every active alarm of the cluster (a
    local answer: no quorum needed, unlike the Alarm RPC)."""
    return [(int(m.group(1)), m.group(2)) for e in errors if (m := _ALARM.search(e))]
