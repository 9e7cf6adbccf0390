"""What a controller runs once its etcd is a voting member, each task from explicit deps:

    member-list  the one reader of the etcd member list, shared by the services below (memberlist.py)
    join-api     the join API (api.py)
    reconciler   campaigns for the reconciler role and reconciles while leading (reconcile/)
    liveness     keeps /etcdward/alive/<member id> (with its etcd version) while the local etcd answers
                 linearizable reads
    etcd-version keeps state/etcd-version.json current (the cluster version moves after upgrades)
    self         this node's own record, removal and leave handover (selfwatch.py)
    backup       spec.backup: the metrics follow the backup status; scheduled backups run beside
                 the reconciler while it leads, backups before membership changes (backup/)
    unstick      restarts the local etcd when it refuses every add on a stale peer status (etcd#14523)

The controller owns the /metrics registry: the API serves it, services register in it.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from .api import serve_api
from .backup.report import BackupMetrics
from .backup.schedule import BackupService
from .etcdversions import keep_pinned
from .memberlist import MemberListReader
from .reconcile.election import Liveness
from .reconcile.loop import run_reconciler
from .reconcile.unstick import run_unstick
from .selfwatch import run_self
from .voterdeps import VoterDeps


def start_voter_services(deps: VoterDeps) -> list[asyncio.Task[None]]:
    ident, cfg = deps.ident, deps.cfg
    body = {"name": ident.name, "memberID": ident.member_id or "", "peerAddress": cfg.peer_address,
            "etcdVersion": str(deps.etcd_version or "")}
    alive = Liveness(deps.store, ident.member_id or "", body, ttl=cfg.spec.reconciler.lease_ttl)
    members = MemberListReader(deps.store)
    registry = CollectorRegistry()
    backups = BackupService(deps.store, deps.data, cfg, ident.name, BackupMetrics(registry))
    before_change = backups.before_change if cfg.spec.backup.before_membership_change else None
    version = ([asyncio.create_task(keep_pinned(deps.data, cfg.etcd.client_port, deps.etcd_version),
                                    name="etcd-version")] if deps.etcd_version else [])
    return [*version, asyncio.create_task(members.run(), name="member-list"),
            asyncio.create_task(serve_api(deps, registry, before_add=before_change), name="join-api"),
            asyncio.create_task(alive.run(), name="liveness"),
            asyncio.create_task(run_self(deps, members), name="self"),
            asyncio.create_task(backups.run(), name="backup"),
            asyncio.create_task(run_reconciler(deps, members, while_leading=backups.run_schedule,
                                               before_removal=before_change), name="reconciler"),
            asyncio.create_task(run_unstick(deps), name="unstick")]
