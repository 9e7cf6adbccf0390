"""What a controller runs once its etcd is a voting member, each task from explicit deps:

    member-list  the one reader of the etcd member list, shared by the services below (memberlist.py)
    join-api     the join API (api.py)
    reconciler   campaigns for the reconciler role and reconciles while leading (reconcile/)
    liveness     keeps /etcdward/alive/<member id> (with its etcd version and its etcd's Status figures)
                 while the local etcd answers linearizable reads
    etcd-version keeps state/etcd-version.json current (the cluster version moves after upgrades)
    self         this node's own record, removal and leave handover (selfwatch.py)
    maintenance  spec.maintenance: NOSPACE recovery and automatic defrag, beside the reconciler while
                 it leads (reconcile/maintain.py); the liveness key carries the db figures it needs
    backup       spec.backup: the metrics follow the backup status; scheduled backups run beside
                 the reconciler while it leads, backups before membership changes (backup/)
    unstick      restarts the local etcd when it refuses every add on a stale peer status (etcd#14523)
    certs        renews this node's leaf certificates at 2/3 of their life and has the API and the
                 etcd client use the new ones (certrenewal.py; etcd reads its files itself)

The controller (node.py) owns the metrics (metrics.py, on its own registry) and the loops'
heartbeats (heartbeats.py) and passes both in VoterDeps: the API serves them, services update them.
"""

from __future__ import annotations

import asyncio
import ssl

from .api import reload_server_certificate, serve_api, server_ssl_context
from .backup.handoff_server import serve_backups
from .backup.report import BackupMetrics
from .backup.schedule import BackupService
from .certrenewal import CertRenewer
from .etcdlogwatch import EtcdLogWatch, logs_membership
from .etcdversions import keep_pinned
from .memberlist import MemberListReader
from .reconcile.election import Liveness
from .reconcile.loop import run_reconciler
from .reconcile.maintain import run_maintenance
from .reconcile.unstick import run_unstick
from .selfwatch import run_self
from .voterdeps import VoterDeps

# The old etcd channel serves calls already on it (a snapshot may stream for minutes) this long
# after a renewal, but at most 1/6 of a lifetime: the old certificate has 1/3 of its life left.
MAX_OLD_CHANNEL_GRACE = 600.0


def start_voter_services(deps: VoterDeps) -> list[asyncio.Task[None]]:
    ident, cfg = deps.ident, deps.cfg
    body = {"name": ident.name, "memberID": ident.member_id or "", "peerAddress": cfg.peer_address,
            "etcdVersion": str(deps.etcd_version or ""), "apiURL": cfg.api_url}
    alive = Liveness(deps.store, ident.member_id or "", body, ttl=cfg.spec.reconciler.lease_ttl,
                     quota=cfg.etcd.quota_bytes, heartbeats=deps.heartbeats)
    deps.metrics.backup_interval.set(cfg.spec.backup.interval_seconds or 0)
    backups = BackupService(deps.store, deps.data, cfg, ident.name, BackupMetrics(deps.metrics),
                            heartbeats=deps.heartbeats)
    before_change = backups.before_change if cfg.spec.backup.before_membership_change else None
    # None: this etcd's log holds no membership lines (extraArgs): the member list is polled
    etcd_log = EtcdLogWatch(deps.data.etcd_log) if logs_membership(cfg.etcd.extra_args) else None
    members = MemberListReader(deps.store, heartbeats=deps.heartbeats, log_watch=etcd_log)

    async def while_leading() -> None:
        await asyncio.gather(backups.run_schedule(), run_maintenance(deps, etcd_log))

    version = ([asyncio.create_task(keep_pinned(deps.data, cfg.etcd.client_port, deps.etcd_version,
                                                heartbeats=deps.heartbeats, log_watch=etcd_log), name="etcd-version")]
               if deps.etcd_version else [])
    tls = server_ssl_context(deps.data)
    log_watch = [asyncio.create_task(etcd_log.run(), name="etcd-log-watch")] if etcd_log else []
    return [*version, *log_watch, asyncio.create_task(members.run(), name="member-list"),
            asyncio.create_task(serve_api(deps, before_add=before_change, tls=tls), name="join-api"),
            asyncio.create_task(cert_renewer(deps, tls).run(), name="certs"),
            asyncio.create_task(alive.run(), name="liveness"),
            asyncio.create_task(run_self(deps, members), name="self"),
            asyncio.create_task(backups.run(), name="backup"),
            asyncio.create_task(serve_backups(deps.store, deps.data), name="backup-handoff"),
            asyncio.create_task(run_reconciler(deps, members, while_leading=while_leading,
                                               before_removal=before_change, lease=alive.kept), name="reconciler"),
            asyncio.create_task(run_unstick(deps), name="unstick")]


def cert_renewer(deps: VoterDeps, tls: ssl.SSLContext) -> CertRenewer:
    lifetime = deps.cfg.spec.pki.cert_lifetime_td
    grace = min(MAX_OLD_CHANNEL_GRACE, lifetime.total_seconds() / 6)

    async def reload(changed: frozenset[str]) -> None:
        if "api" in changed:
            reload_server_certificate(tls, deps.data)
        if "etcd-client" in changed:
            crt, key = deps.data.etcd_cert("client")
            await deps.store.use_client_cert(crt.read_bytes(), key.read_bytes(), grace)

    return CertRenewer(deps.data, lifetime, deps.store, deps.ident.name, deps.ident.member_id or "", reload,
                       metrics=deps.metrics, heartbeats=deps.heartbeats)
