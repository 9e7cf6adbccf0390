"""What a controller runs once its etcd is a voting member, and what it does when it learns
that it was removed from the cluster."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import TYPE_CHECKING

from .paths import atomic_write

if TYPE_CHECKING:
    from .node import Controller

log = logging.getLogger(__name__)


async def start_voter_services(ctl: "Controller") -> list[asyncio.Task[None]]:
    from .api import serve_api
    from .reconcile.loop import run_reconciler

    tasks = [asyncio.create_task(serve_api(ctl), name="join-api"),
             asyncio.create_task(run_reconciler(ctl), name="reconciler")]
    return tasks


def write_tombstone(ctl: "Controller", why: str) -> None:
    from .node import move_aside

    data = ctl.data
    dest = move_aside(data.etcd) if data.etcd.exists() else None
    body = {
        "removedAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "reason": why,
        "member": ctl.ident.name if ctl.ident else None,
        "memberID": ctl.ident.member_id if ctl.ident else None,
        "clusterID": ctl.ident.cluster_id if ctl.ident else None,
        "etcdDataMovedTo": str(dest) if dest else None,
    }
    atomic_write(data.tombstone, json.dumps(body, indent=2) + "\n")
    log.warning(
        "this member was removed from the etcd cluster (%s); its etcd data dir was moved to %s. "
        "To rejoin: `etcdward reset --data-dir %s`, then start the controller with a new join token.",
        why, dest, data.root)
