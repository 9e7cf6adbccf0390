"""Every membership operation etcdward sends to etcd goes through `MemberOps.run`: the learner
add (join/server.py), the promotion and removals (reconcile/loop.py), the guarded removal of
`etcd leave` (membership.py) and the leadership moves (selfwatch.py, membership.py,
reconcile/unstick.py). Each one becomes:

- ONE log line naming the member and its ID, with the LogRecord extras `member`, `memberID`,
  `action` and `outcome` (the JSON log format emits them as fields);
- a count and a duration in etcdward_membership_operations_total and
  etcdward_membership_operation_duration_seconds, by action and outcome.

Outcomes: success; noop (somebody else already did it: the member is gone, already a voter,
its peer URL already added); refused (etcd refuses it for now - the caller says what it waits
for, so this line is logged at debug level only: a learner catching up is refused every pass);
unknown (etcd did not answer: the change may or may not have landed); failed (anything else).
The exception, if any, is re-raised: the caller's handling does not change.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus_client and the store are not needed to log a CLI's `etcd leave`
    from .metrics import Metrics


class MemberAction(enum.StrEnum):
    ADD_LEARNER = "add-learner"
    PROMOTE = "promote"
    REMOVE = "remove"
    MOVE_LEADER = "move-leader"


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    NOOP = "noop"
    REFUSED = "refused"
    UNKNOWN = "unknown"
    FAILED = "failed"


_PHRASE = {Outcome.NOOP: "already done", Outcome.REFUSED: "refused for now",
           Outcome.UNKNOWN: "outcome unknown", Outcome.FAILED: "failed"}
_LEVEL = {Outcome.SUCCESS: logging.INFO, Outcome.NOOP: logging.INFO, Outcome.REFUSED: logging.DEBUG,
          Outcome.UNKNOWN: logging.WARNING, Outcome.FAILED: logging.WARNING}


def outcome_of(action: MemberAction, exc: BaseException | None) -> Outcome:
    if exc is None:
        return Outcome.SUCCESS
    from .store import errors as E  # an error from the store means the store is loaded already

    if isinstance(exc, E.Unavailable) or not isinstance(exc, Exception):  # no answer, or cancelled meanwhile
        return Outcome.UNKNOWN
    if action is MemberAction.ADD_LEARNER and isinstance(exc, E.MemberNotFound):
        # etcd derives a new member's ID from its peer URLs and the second: re-adding a peer URL
        # within the second it was removed gives a removed ID. The next second works.
        return Outcome.REFUSED
    if isinstance(exc, E.Temporary):
        return Outcome.REFUSED
    if isinstance(exc, (E.MemberNotFound, E.MemberNotLearner, E.PeerURLExists)):
        return Outcome.NOOP
    return Outcome.FAILED


@dataclass
class Operation:
    """One operation in progress; `member_id` may be set once etcd has told it (a learner add)."""
    action: MemberAction
    member: str
    member_id: int
    line: str  # the line logged on success; it names the member and its ID


class MemberOps:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics  # None: logged only (the CLI's `etcd leave`)

    @asynccontextmanager
    async def run(self, log: logging.Logger, action: MemberAction, member: str, member_id: int, line: str,
                  prefix: str = "") -> AsyncIterator[Operation]:
        """Time the operation inside the `with`, then log and count it once. `line` is the
        success line; other outcomes log `<prefix><action> of <member> (id <id>): <outcome>: <why>`."""
        op = Operation(action, member, member_id, line)
        started = time.monotonic()
        try:
            yield op
        except BaseException as e:
            self.record(log, op, outcome_of(action, e), time.monotonic() - started, e, prefix)
            raise
        self.record(log, op, Outcome.SUCCESS, time.monotonic() - started, None, prefix)

    def record(self, log: logging.Logger, op: Operation, outcome: Outcome, seconds: float,
               exc: BaseException | None = None, prefix: str = "") -> None:
        hex_id = format(op.member_id, "x") if op.member_id else "unknown"
        if outcome is Outcome.SUCCESS:
            line = op.line
        else:
            line = f"{prefix}{op.action} of {op.member} (id {hex_id}): {_PHRASE[outcome]}: {exc or 'cancelled'}"
        if op.member not in line or hex_id not in line:
            line += f" [member {op.member}, id {hex_id}]"
        level = logging.DEBUG if isinstance(exc, BaseException) and not isinstance(exc, Exception) else _LEVEL[outcome]
        log.log(level, "%s", line, extra={"member": op.member, "memberID": hex_id, "action": str(op.action),
                                          "outcome": str(outcome)})
        if self.metrics is not None:
            self.metrics.membership_operations.labels(op.action, outcome).inc()
            self.metrics.membership_operation_duration.labels(op.action, outcome).observe(seconds)
