"""Every Prometheus metric a controller exports, defined in one place (the README's "Monitoring"
section lists them; deploy/prometheus/ alerts and deploy/grafana/ charts use these names).

`Metrics(registry)` is built by the controller (node.py) on its own CollectorRegistry and passed
explicitly to what updates it: the supervisor (etcd restarts), the membership operations
(memberops.py), the join API, the reconciler, the backup service, the maintenance loop and the
defrag endpoint, the certificate renewer, and the scrape-time figures (health.py). Names follow Prometheus' rules: prefix `etcdward_`, base units in the name
(`_seconds`), counters end in `_total` (prometheus_client appends it to a Counter's name).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Membership RPCs take milliseconds to a few seconds (an add waits for etcd's 5 s gate).
OPERATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A join waits behind other learners: seconds to many minutes.
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Label values (memberops.MemberAction and .Outcome are these; tests/test_monitoring.py checks it)
MEMBER_ACTIONS = ("add-learner", "promote", "remove", "move-leader")
MEMBER_OUTCOMES = ("success", "noop", "refused", "unknown", "failed")
JOIN_OUTCOMES = ("joined", "heartbeat", "queued", "conflict", "abandoned", "unavailable", "rejected")
# A member's defrag: milliseconds for a small db, 17-21 s per GB (etcd-druid's figures).
DEFRAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
DEFRAG_TRIGGERS = ("manual", "auto", "nospace")
DEFRAG_OUTCOMES = ("success", "refused", "failed")
NOSPACE_OUTCOMES = ("recovered", "incomplete", "failed")
RENEWAL_OUTCOMES = ("success", "failed", "reload-failed")
ALARMS = ("NOSPACE", "CORRUPT")  # etcd's alarm types (etcdserverpb.AlarmType, NONE aside)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        # -- membership operations (memberops.py) -------------------------------------------------
        self.membership_operations = Counter(
            "etcdward_membership_operations", "membership operations this controller sent to etcd, by action "
            "(add-learner, promote, remove, move-leader) and outcome (success, noop, refused, unknown, failed)",
            ["action", "outcome"], registry=r)
        self.membership_operation_duration = Histogram(
            "etcdward_membership_operation_duration_seconds", "time etcd took to answer a membership operation",
            ["action", "outcome"], buckets=OPERATION_BUCKETS, registry=r)
        # -- the join API -------------------------------------------------------------------------
        self.api_requests = Counter("etcdward_api_requests", "join API requests, by path and HTTP status code",
                                    ["path", "code"], registry=r)
        self.join_requests = Counter(
            "etcdward_join_requests", "join requests answered by this controller, by outcome (joined, heartbeat, "
            "queued, conflict, abandoned, unavailable, rejected)", ["outcome"], registry=r)
        self.join_request_duration = Histogram("etcdward_join_request_duration_seconds",
                                               "time to answer a join request", registry=r)
        self.join_queue_length = Gauge("etcdward_join_queue_length",
                                       "join requests waiting in the cluster-wide queue", registry=r)
        self.join_queue_wait = Histogram(
            "etcdward_join_queue_wait_seconds", "time from this controller first queueing a join request to "
            "adding its learner", buckets=QUEUE_WAIT_BUCKETS, registry=r)
        # -- the reconciler -----------------------------------------------------------------------
        self.reconcile_passes = Counter(
            "etcdward_reconcile_passes", "reconcile passes, by result (acted, idle, waiting, error)", ["result"],
            registry=r)
        self.reconcile_decisions = Counter("etcdward_reconcile_decisions", "actions the reconciler applied, by kind",
                                           ["kind"], registry=r)
        self.records_out_of_sync = Gauge(
            "etcdward_records_out_of_sync", "EtcdMember records that differ from the etcd member list (missing, "
            "stale, duplicate or invalid), as the reconciler leader last saw them (0 on other controllers)",
            registry=r)
        self.reconciler_leader = Gauge("etcdward_reconciler_leader", "1 while this controller leads the reconciler",
                                       registry=r)
        # -- the local etcd and the cluster, read at scrape time (health.py) ----------------------
        self.etcd_leader = Gauge("etcdward_etcd_leader", "1 while this controller's etcd is the raft leader",
                                 registry=r)
        self.ready = Gauge("etcdward_ready", "1 when /readyz passes: the local etcd answers a linearizable read "
                           "and this member is a started voter", registry=r)
        self.etcd_restarts = Counter(
            "etcdward_etcd_restarts", "times the supervisor restarted the local etcd, by reason (crash: it exited; "
            "requested: the controller restarted it)", ["reason"], registry=r)
        self.cluster_members = Gauge("etcdward_cluster_members", "etcd members by role (voter, learner)", ["role"],
                                     registry=r)
        self.member_reporting = Gauge(
            "etcdward_member_reporting", "per voter: 1 while its controller keeps its liveness key (its etcd "
            "answers linearizable reads), else 0", ["member", "member_id"], registry=r)
        self.learner_age = Gauge("etcdward_learner_age_seconds",
                                 "per learner: time since this controller first saw it", ["member", "member_id"],
                                 registry=r)
        # -- the controller's own loops (heartbeats.py) -------------------------------------------
        self.loop_heartbeat_age = Gauge("etcdward_loop_heartbeat_age_seconds",
                                        "time since each long-running loop last went round", ["loop"], registry=r)
        self.loop_stalled = Gauge("etcdward_loop_stalled", "1 when a loop's heartbeat is older than its bound "
                                  "(/livez fails)", ["loop"], registry=r)
        # -- backups (backup/report.py BackupMetrics keeps them) ----------------------------------
        self.backup_last_success = Gauge(
            "etcdward_backup_last_success_timestamp_seconds",
            "unix time of the cluster's last successful backup (0: none known)", registry=r)
        self.backup_duration = Gauge("etcdward_backup_duration_seconds", "how long the last successful backup took",
                                     registry=r)
        self.backup_last_failure = Gauge(
            "etcdward_backup_last_failure_timestamp_seconds",
            "unix time of the cluster's last failed backup (0: none known)", registry=r)
        self.backup_failures = Counter("etcdward_backup_failures", "backups that failed in this controller process",
                                       registry=r)
        self.backup_interval = Gauge("etcdward_backup_interval_seconds",
                                     "spec.backup.interval (0: no scheduled backups)", registry=r)
        # -- maintenance (reconcile/maintain.py, the defrag endpoint in api.py) --------------------
        self.defrags = Counter(
            "etcdward_defrag_operations", "member defrags, by trigger (manual: `etcd defrag --all` through this "
            "controller; auto, nospace: decided by this controller as reconciler leader) and outcome (success, "
            "refused: the cluster was not healthy enough or another defrag ran, failed)", ["trigger", "outcome"],
            registry=r)
        self.defrag_duration = Histogram(
            "etcdward_defrag_duration_seconds", "time a member's etcd took to defragment (successful defrags)",
            ["trigger"], buckets=DEFRAG_BUCKETS, registry=r)
        self.nospace_recoveries = Counter(
            "etcdward_nospace_recoveries", "NOSPACE recoveries this controller ran as reconciler leader, by outcome "
            "(recovered: alarm disarmed; incomplete: a db is still over the quota; failed)", ["outcome"], registry=r)
        self.etcd_alarms = Gauge("etcdward_etcd_alarms", "etcd members with each active alarm (NOSPACE, CORRUPT), "
                                 "as this controller's etcd reports them", ["alarm"], registry=r)
        # -- this node's certificates (read from pki/ at scrape time; certrenewal.py) --------------
        self.certificate_expiry = Gauge(
            "etcdward_certificate_expiry_timestamp_seconds", "unix time each certificate of this node expires "
            "(leaves: api, etcd-server, etcd-peer, etcd-client; CAs: ca, etcd-ca)", ["cert"], registry=r)
        self.certificate_renewal_due = Gauge(
            "etcdward_certificate_renewal_due_timestamp_seconds", "unix time by which the controller renews each "
            "leaf (2/3 of its life); none for CAs and for leaves that already end with their CA", ["cert"],
            registry=r)
        self.certificate_renewals = Counter(
            "etcdward_certificate_renewals", "leaf certificate renewals by this controller, by outcome (success: "
            "one per certificate; failed: a round that could not write them; reload-failed: written but not "
            "loaded by the API or the etcd client)", ["outcome"], registry=r)
        # -- what runs ----------------------------------------------------------------------------
        self.build_info = Gauge("etcdward_build_info", "always 1: the versions this controller runs",
                                ["version", "python_version", "etcd_version"], registry=r)

        # Counters start at 0 for every label value an alert or chart uses: increase() and rate()
        # need a series before its first event.
        for action in MEMBER_ACTIONS:
            for outcome in MEMBER_OUTCOMES:
                self.membership_operations.labels(action, outcome)
        for outcome in JOIN_OUTCOMES:
            self.join_requests.labels(outcome)
        for result in ("acted", "idle", "waiting", "error"):
            self.reconcile_passes.labels(result)
        for reason in ("crash", "requested"):
            self.etcd_restarts.labels(reason)
        for trigger in DEFRAG_TRIGGERS:
            self.defrag_duration.labels(trigger)
            for outcome in DEFRAG_OUTCOMES:
                self.defrags.labels(trigger, outcome)
        for outcome in NOSPACE_OUTCOMES:
            self.nospace_recoveries.labels(outcome)
        for outcome in RENEWAL_OUTCOMES:
            self.certificate_renewals.labels(outcome)

    def set_build_info(self, version: str, python_version: str, etcd_version: str) -> None:
        self.build_info.clear()
        self.build_info.labels(version, python_version, etcd_version).set(1)
