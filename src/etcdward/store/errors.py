"""Our exception types for everything that can go wrong talking to etcd.

Transport and etcd errors never leave `store/` as they came; callers branch on these types. Each one is also
one of the two outcomes every layer speaks (`etcdward.errors`): *temporary* (etcd refuses for
now: unavailable, the ~5 s gate after a membership change, one learner at a time, a learner
still catching up) or *permanent* (retrying cannot help). The table is etcd-behaviour.md §4.
"""

from __future__ import annotations

from ..errors import EtcdwardError, Permanent, Temporary


class StoreError(EtcdwardError):
    """Base class: something went wrong talking to etcd."""


class Unavailable(StoreError, Temporary):
    """etcd could not be reached or did not answer in time (connection refused, no quorum)."""


class Refused(Unavailable):
    """etcd answered, and the answer was "not now" (leader changed, no leader, request timed out):
    unlike an etcd that cannot be reached at all, worth asking again within the call's time."""


class Compacted(Unavailable):
    """A watch asked for revisions etcd has compacted away: re-list, then watch from the new
    revision (an Unavailable, so that callers that simply re-list need not know it)."""

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class PermissionDenied(StoreError, Permanent):
    pass


class UnhealthyCluster(StoreError, Temporary):
    """etcdserver: unhealthy cluster (the 5 s connectivity gate, or an unstarted voter)."""


class TooManyLearners(StoreError, Temporary):
    """etcdserver: too many learner members in cluster."""


class LearnerNotReady(StoreError, Temporary):
    """etcdserver: can only promote a learner member which is in sync with leader."""


class NotEnoughStarted(StoreError, Temporary):
    """etcdserver: re-configuration failed due to not enough started members."""


class NoSpace(StoreError, Temporary):
    """etcdserver: mvcc: database space exceeded: the NOSPACE alarm is raised, etcd serves reads
    and deletes only until space is freed and the alarm disarmed (the reconciler leader does both,
    see reconcile/maintain.py)."""


class LeaderChanged(StoreError, Temporary):
    pass


class LearnerUnsupportedRPC(StoreError, Temporary):
    """etcdserver: rpc not supported for learner (this member is still a learner)."""


class MemberNotFound(StoreError, Permanent):
    pass


class MemberNotLearner(StoreError, Permanent):
    pass


class PeerURLExists(StoreError, Permanent):
    pass


class MemberRemoved(StoreError, Permanent):
    """This member has been permanently removed from the cluster."""


class ClusterIDMismatch(StoreError, Permanent):
    pass


class Other(StoreError, Permanent):
    """An etcd error we do not know: reported as it is, not retried."""


# etcd message fragment -> our type, most specific first.
MESSAGE_MAP: tuple[tuple[str, type[StoreError]], ...] = (
    ("too many learner members", TooManyLearners),
    ("can only promote a learner member which is in sync", LearnerNotReady),
    ("learner member which is in sync", LearnerNotReady),
    ("not enough started members", NotEnoughStarted),
    ("unhealthy cluster", UnhealthyCluster),
    ("leader changed", LeaderChanged),
    ("database space exceeded", NoSpace),
    ("can only promote a learner member", MemberNotLearner),
    ("member not found", MemberNotFound),
    ("peer urls already exists", PeerURLExists),
    ("peerurl exists", PeerURLExists),
    ("member id already exist", PeerURLExists),
    ("rpc not supported for learner", LearnerUnsupportedRPC),
    ("permanently removed", MemberRemoved),
    ("cluster id mismatch", ClusterIDMismatch),
    ("permission denied", PermissionDenied),
    ("request timed out", Unavailable),
    ("no leader", Unavailable),
    ("deadline exceeded", Unavailable),
    ("timed out", Unavailable),
)


def classify(message: str) -> type[StoreError] | None:
    low = message.lower()
    for fragment, kind in MESSAGE_MAP:
        if fragment in low:
            return kind
    return None
