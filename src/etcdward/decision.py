"""The start decision: one pure function of what is on disk and whether a token was given.

    etcd/member/snap/db exists         -> START (a token, if any, is ignored)
    no db, token given                 -> JOIN
    no db, token given but empty       -> REFUSE (`controller "$TOKEN"` with TOKEN unset)
    no db, no token                    -> BOOTSTRAP a new single-member cluster

Only the absence of both a token argument and a token file means "no token": an empty or
blank one is a mistake, and taking it for "no token" would bootstrap a second cluster.

Certificates and CA files have no bearing on it (k0s #5149: CA files were taken as "joined",
and a node that crashed mid-join bootstrapped a second cluster). Two local facts can only make
the answer *safer*, never turn a join into a bootstrap:
- a tombstone (this node was removed from its cluster) -> REFUSE until `etcdward reset`;
- a pinned cluster ID with no db and no token (the node was a member, its etcd data is gone)
  -> REFUSE: bootstrapping would silently create a second cluster;
- an unfinished join (state/join.json) with no db and no token -> REFUSE, for the same reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Token(enum.Enum):
    NONE = "none"  # neither a token argument nor --token-file
    GIVEN = "given"
    BLANK = "blank"  # given, but empty or only white space


class Action(enum.Enum):
    START = "start"
    JOIN = "join"
    BOOTSTRAP = "bootstrap"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Disk:
    has_db: bool
    has_partial_etcd: bool = False  # etcd/ has content but no db (e.g. member/wal only)
    pinned_cluster_id: str | None = None
    tombstone: bool = False
    join_started: str | None = None  # join API this node started joining through (state/join.json)
    join_refused: str | None = None  # that join API refused the join and no learner was ever answered


@dataclass(frozen=True)
class Decision:
    action: Action
    move_partial_aside: bool = False
    reason: str = ""


def decide(disk: Disk, token: Token) -> Decision:
    if disk.tombstone:
        return Decision(Action.REFUSE, reason=(
            "this node was removed from its etcd cluster (see state/removed.json); "
            "run `etcdward reset` before it can join again"))
    if disk.has_db:
        return Decision(Action.START, reason="etcd data exists (member/snap/db)")
    if token is Token.BLANK:
        return Decision(Action.REFUSE, reason=(
            "the join token given is empty (an unset variable in `etcdward controller \"$TOKEN\"`, or an empty "
            "--token-file?); give the token to join a cluster, or give none at all to bootstrap a new one"))
    if token is Token.GIVEN:
        return Decision(Action.JOIN, move_partial_aside=disk.has_partial_etcd, reason="no etcd data, token given")
    if disk.join_started and disk.join_refused:
        return Decision(Action.REFUSE, reason=(
            f"this node's join via {disk.join_started} was refused ({disk.join_refused}) and no learner was added "
            "for it (state/join.json); start it again with a valid join token, or run `etcdward reset` to start "
            "over (e.g. to bootstrap a new cluster)"))
    if disk.join_started:
        return Decision(Action.REFUSE, reason=(
            f"this node started joining a cluster via {disk.join_started} (state/join.json) and may already "
            "have a learner there; bootstrapping would create a second cluster. Start it again with the join "
            "token, or run `etcdward reset` to start over"))
    if disk.pinned_cluster_id:
        return Decision(Action.REFUSE, reason=(
            f"this node was a member of cluster {disk.pinned_cluster_id} but its etcd data "
            "(member/snap/db) is gone; bootstrapping would create a second cluster. "
            "Join again with a token, or run `etcdward reset` to start over"))
    return Decision(Action.BOOTSTRAP, move_partial_aside=disk.has_partial_etcd, reason="no etcd data, no token")
