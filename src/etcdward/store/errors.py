"""Our exception types for everything that can go wrong talking to etcd.

Library and gRPC errors never leave `store/`; callers branch on these types.
`TEMPORARY` lists the ones a membership change may retry later (etcd-behaviour.md §4).
"""

from __future__ import annotations


from ..errors import EtcdwardError


class StoreError(EtcdwardError):
    """Base class: something went wrong talking to etcd."""


class Unavailable(StoreError):
    """etcd could not be reached or did not answer in time (connection refused, no quorum)."""


class CompareFailed(StoreError):
    """A compare-and-swap lost: somebody else wrote first."""


class PermissionDenied(StoreError):
    pass


class UnhealthyCluster(StoreError):
    """etcdserver: unhealthy cluster (the 5 s connectivity gate, or an unstarted voter)."""


class TooManyLearners(StoreError):
    """etcdserver: too many learner members in cluster."""


class LearnerNotReady(StoreError):
    """etcdserver: can only promote a learner member which is in sync with leader."""


class NotEnoughStarted(StoreError):
    """etcdserver: re-configuration failed due to not enough started members."""


class LeaderChanged(StoreError):
    pass


class MemberNotFound(StoreError):
    pass


class MemberNotLearner(StoreError):
    pass


class PeerURLExists(StoreError):
    pass


class LearnerUnsupportedRPC(StoreError):
    """etcdserver: rpc not supported for learner (this member is still a learner)."""


class MemberRemoved(StoreError):
    """This member has been permanently removed from the cluster."""


class ClusterIDMismatch(StoreError):
    pass


# Membership changes that fail with these may succeed if tried again a little later.
TEMPORARY: tuple[type[StoreError], ...] = (
    Unavailable, UnhealthyCluster, TooManyLearners, LearnerNotReady, NotEnoughStarted, LeaderChanged,
)

# etcd message fragment -> our type, most specific first.
MESSAGE_MAP: tuple[tuple[str, type[StoreError]], ...] = (
    ("too many learner members", TooManyLearners),
    ("can only promote a learner member which is in sync", LearnerNotReady),
    ("learner member which is in sync", LearnerNotReady),
    ("not enough started members", NotEnoughStarted),
    ("unhealthy cluster", UnhealthyCluster),
    ("leader changed", LeaderChanged),
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
