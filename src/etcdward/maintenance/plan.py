"""Pure decisions of maintenance: who needs a defrag, in which order, and whether now is safe.

Defragmenting a member blocks it (reads and writes) until the rewrite of its db is done: while
one member is busy, the others must still make a quorum, so nothing runs while any member is
not started, not live, a learner, or a join is queued (a defrag would stall the join's
catch-up too). The etcd leader goes last, after leadership has moved away (otherwise every
client stalls: etcd-druid#1052, cluster-etcd-operator#1618).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Member


@dataclass(frozen=True)
class Figures:
    """A member's db figures (etcd's Status): its file size and the bytes holding data."""
    db_size: int
    db_size_in_use: int

    @property
    def free(self) -> int:
        return max(0, self.db_size - self.db_size_in_use)

    @property
    def free_ratio(self) -> float:
        return self.free / self.db_size if self.db_size > 0 else 0.0

    def as_dict(self) -> dict[str, int]:
        return {"dbSize": self.db_size, "dbSizeInUse": self.db_size_in_use}

    @classmethod
    def parse(cls, body: Any) -> Figures | None:
        """From a liveness body or an API answer; None when the figures are missing or not numbers."""
        if not isinstance(body, dict):
            return None
        size, used = body.get("dbSize"), body.get("dbSizeInUse")
        if type(size) is not int or type(used) is not int or size < 0 or used < 0:
            return None
        return cls(size, used)


def needs_defrag(f: Figures, fragmented_ratio: float, min_fragmented_bytes: int) -> bool:
    """A candidate: enough of its file is free pages, both as a share and in bytes."""
    return f.db_size > 0 and f.free_ratio >= fragmented_ratio and f.free >= min_fragmented_bytes


# Disarm NOSPACE only with this share of the quota free in every db: a db just under the quota
# would raise the alarm again within a few writes, and the leader would cycle compact, defrag,
# disarm every NOSPACE_RETRY seconds while clients see writes refused most of the time.
DISARM_HEADROOM = 0.10


def can_disarm(largest_db: int, quota: int) -> bool:
    """True when the largest defragmented db leaves DISARM_HEADROOM of the quota free."""
    return 0 < quota and largest_db <= quota * (1 - DISARM_HEADROOM)


def defrag_order(member_ids: Iterable[int], leader_id: int) -> list[int]:
    """Followers first (by member ID, for a stable order), the etcd leader last."""
    return sorted(set(member_ids), key=lambda i: (i == leader_id, i))


def candidates(figures: Mapping[int, Figures | None], leader_id: int, fragmented_ratio: float,
               min_fragmented_bytes: int) -> list[int]:
    """Members that need a defrag, in the order to do them; members without figures are skipped."""
    due = [mid for mid, f in figures.items() if f is not None and needs_defrag(f, fragmented_ratio,
                                                                               min_fragmented_bytes)]
    return defrag_order(due, leader_id)


def cluster_blocker(members: Sequence[Member], live: Iterable[int], queued_joins: int) -> str | None:
    """Why no member may be defragmented now (naming the member), or None."""
    live_ids = set(live)
    for m in sorted(members, key=lambda m: (m.name, m.id)):
        who = f"{m.name or '(unstarted)'} (id {m.hex_id})"
        if not m.started:
            return f"member {who} at {m.peer_url} has not started: a join is in progress"
        if m.is_learner:
            return f"member {who} is a learner: a join is in progress"
        if m.id not in live_ids:
            return f"member {who} is not live (its controller has not confirmed a healthy etcd within its lease)"
    if queued_joins:
        return f"a join is in progress ({queued_joins} request(s) queued)"
    return None
