"""Pure reconcile rules: (snapshot) -> actions, most urgent first. No I/O here.

The loop applies the first action and logs its message as the pass's one decision line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..store import Member


@dataclass(frozen=True)
class JoinInfo:
    node: str
    peer_url: str
    added: float  # unix time the learner was added


@dataclass(frozen=True)
class Snapshot:
    members: tuple[Member, ...]
    joins: Mapping[int, JoinInfo]  # member id -> join request that created it
    now: float
    learner_timeout: float = 300.0
    first_seen: Mapping[int, float] = field(default_factory=dict)  # fallback age for unknown learners

    def name_of(self, m: Member) -> str:
        if m.name:
            return m.name
        j = self.joins.get(m.id)
        return j.node if j else "(unstarted)"


@dataclass(frozen=True)
class Action:
    kind: str  # promote | remove-stalled-learner | forget-join
    member_id: int
    message: str


def learner_age(s: Snapshot, m: Member) -> float:
    j = s.joins.get(m.id)
    since = j.added if j else s.first_seen.get(m.id, s.now)
    return s.now - since


def membership_actions(s: Snapshot) -> list[Action]:
    out: list[Action] = []
    for m in sorted(s.members, key=lambda m: m.id):
        if not m.is_learner:
            continue
        if m.started:
            out.append(Action("promote", m.id, f"promoted learner {m.name} (id {m.hex_id})"))
        elif learner_age(s, m) > s.learner_timeout:
            out.append(Action("remove-stalled-learner", m.id, (
                f"removed learner {s.name_of(m)} (id {m.hex_id}, {m.peer_url}) that did not start within "
                f"{s.learner_timeout:.0f}s")))
    ids = {m.id for m in s.members}
    pending = {m.id for m in s.members if m.is_learner or not m.started}
    for mid in sorted(s.joins):
        if mid not in pending:
            state = "gone" if mid not in ids else "voting"
            out.append(Action("forget-join", mid, f"forgot join record of {s.joins[mid].node} (id {mid:x}, {state})"))
    return out


def decide(s: Snapshot) -> list[Action]:
    return membership_actions(s)


def idle_message(s: Snapshot) -> str:
    voters = sum(1 for m in s.members if not m.is_learner)
    learners = len(s.members) - voters
    return f"no action: {voters} voters, {learners} learners"
