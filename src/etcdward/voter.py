"""What a controller runs once its etcd is a voting member, each task from explicit deps:

    join-api     the join API (api.py)
    reconciler   campaigns for the reconciler role and reconciles while leading (reconcile/)
    liveness     keeps /etcdward/alive/<member id> (with its etcd version) while the local etcd answers
                 linearizable reads
    etcd-version keeps state/etcd-version.json current (the cluster version moves after upgrades)
    self         this node's own record, removal and leave handover (selfwatch.py)
    maintenance  spec.maintenance: NOSPACE recovery and automatic defrag, beside the reconciler while
                 it leads (reconcile/maintain.py); the liveness key carries the db figures it needs
    backup       spec.backup: the metrics follow the backup status; scheduled backups run beside
                 the reconciler while it leads, backups before membership changes (backup/)
    unstick      restarts the local etcd when it refuses every add on a stale peer status (etcd#14523)

The controller owns the /metrics registry: the API serves it, services register in it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from .api import serve_api
from .backup.report import BackupMetrics
from .backup.schedule import BackupService
from .etcdversions import keep_pinned
from .maintenance.figures import status_figures
from .reconcile.election import Liveness
from .reconcile.loop import run_reconciler
from .reconcile.maintain import run_maintenance
from .reconcile.unstick import run_unstick
from .selfwatch import run_self
from .voterdeps import VoterDeps


def start_voter_services(deps: VoterDeps) -> list[asyncio.Task[None]]:
    ident, cfg = deps.ident, deps.cfg
    body = {"name": ident.name, "memberID": ident.member_id or "", "peerAddress": cfg.peer_address,
            "etcdVersion": str(deps.etcd_version or ""), "apiURL": cfg.api_url}

    async def figures() -> dict[str, Any]:
        return status_figures(await deps.store.status())

    alive = Liveness(deps.store, ident.member_id or "", body, ttl=cfg.spec.reconciler.lease_ttl, figures=figures)
    registry = CollectorRegistry()
    backups = BackupService(deps.store, deps.data, cfg, ident.name, BackupMetrics(registry))
    before_change = backups.before_change if cfg.spec.backup.before_membership_change else None

    async def while_leading() -> None:
        await asyncio.gather(backups.run_schedule(), run_maintenance(deps))

    version = ([asyncio.create_task(keep_pinned(deps.data, cfg.etcd.client_port, deps.etcd_version),
                                    name="etcd-version")] if deps.etcd_version else [])
    return [*version, asyncio.create_task(serve_api(deps, registry, before_add=before_change), name="join-api"),
            asyncio.create_task(alive.run(), name="liveness"),
            asyncio.create_task(run_self(deps), name="self"),
            asyncio.create_task(backups.run(), name="backup"),
            asyncio.create_task(run_reconciler(deps, while_leading=while_leading,
                                               before_removal=before_change), name="reconciler"),
            asyncio.create_task(run_unstick(deps), name="unstick")]
