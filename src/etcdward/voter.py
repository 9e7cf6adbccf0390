"""What a controller runs once its etcd is a voting member, each task from explicit deps:

    join-api     the join API (api.py)
    reconciler   campaigns for the reconciler role and reconciles while leading (reconcile/)
    liveness     keeps /etcdward/alive/<member id> while the local etcd answers linearizable reads
    self         this node's own record, removal and leave handover (selfwatch.py)
    backup       spec.backup: the metrics follow the backup status; scheduled backups run beside
                 the reconciler while it leads, backups before membership changes (backup/)

The controller owns the /metrics registry: the API serves it, services register in it.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from .api import serve_api
from .backup.report import BackupMetrics
from .backup.schedule import BackupService
from .reconcile.election import Liveness
from .reconcile.loop import run_reconciler
from .selfwatch import run_self
from .voterdeps import VoterDeps


def start_voter_services(deps: VoterDeps) -> list[asyncio.Task[None]]:
    ident, cfg = deps.ident, deps.cfg
    body = {"name": ident.name, "memberID": ident.member_id or "", "peerAddress": cfg.peer_address}
    alive = Liveness(deps.store, ident.member_id or "", body, ttl=cfg.spec.reconciler.lease_ttl)
    registry = CollectorRegistry()
    backups = BackupService(deps.store, deps.data, cfg, ident.name, BackupMetrics(registry))
    before_change = backups.before_change if cfg.spec.backup.before_membership_change else None
    return [asyncio.create_task(serve_api(deps, registry, before_add=before_change), name="join-api"),
            asyncio.create_task(alive.run(), name="liveness"),
            asyncio.create_task(run_self(deps), name="self"),
            asyncio.create_task(backups.run(), name="backup"),
            asyncio.create_task(run_reconciler(deps, while_leading=backups.run_schedule,
                                               before_removal=before_change), name="reconciler")]
