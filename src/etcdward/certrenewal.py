"""Renewing this node's leaf certificates while the controller runs (never a CA).

    when      each leaf at 2/3 of its life, earlier by a jitter of up to 10 % of it drawn from its
              serial (pki.controller_renews_at); at least a third of its life is left for retries
    how       pki.renew_leaves: same key, new serial and validity, one atomic rename of the .crt
    etcd      needs nothing: etcd 3.4+ reads its cert and key files at every TLS handshake, for
              clients, for peers dialling in and when it dials peers (checked against 3.4.23), so
              new connections get the new certificate; open ones keep theirs
    reload    whatever loaded a certificate into memory (the API's SSL context, the controller's
              etcd client) is given the new files by the `reload` hook, with the names of the
              leaves whose files changed - also when `etcdward certs renew` changed them
    --all     `certs renew --all` writes CERTS_RENEW_REQUEST; each controller renews all its
              leaves once per request id and answers under CERTS_RENEWED/<member id> (on a lease)
    watched   certexpiry.py (`node_certificates` + `expiry_problems`): what
              `etcdward status` warns about and /metrics exports (etcdward_certificate_*)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .certfiles import node_leaves, read_dates
from .errors import Permanent, Temporary
from .heartbeats import ETCD_CALL, Heartbeats
from .keys import CERTS_RENEW_REQUEST, CERTS_RENEWED
from .paths import DataDir
from .retry import retry
from .store import Store
from .store import errors as E
from .tasks import cancel_and_wait

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography import x509

    from .metrics import Metrics

log = logging.getLogger(__name__)

POLL = 5.0  # seconds between looks at the files and at the request key
ANSWER_TTL = 600  # seconds an answer to a renew request is kept
RETRY_BACKOFF = (1.0, 2.0, 5.0)
RETRY_FOR = 30.0  # seconds one round of retries lasts; the next poll starts another

Reload = Callable[[frozenset[str]], Awaitable[None]]  # the leaf names whose files changed


class RenewFailed(Temporary):
    """A certificate file could not be written (disk full, permissions): tried again."""


def _stat_ids(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return 0, 0, 0
    return st.st_ino, st.st_mtime_ns, st.st_size


def file_ids(data: DataDir) -> dict[str, tuple[int, ...]]:
    """A cheap fingerprint of each leaf's files: an atomic rename changes the inode."""
    return {leaf.name: (*_stat_ids(leaf.crt), *_stat_ids(leaf.key)) for leaf in node_leaves(data)}


def pki_ids(data: DataDir) -> tuple[object, ...]:
    """The fingerprint of every file a renewal reads (the leaves' and their CAs'): while it stays
    the same, so does the plan computed from them, and nothing needs parsing again."""
    cas = sorted({p for leaf in node_leaves(data) for p in (leaf.ca_crt, leaf.ca_key)})
    return (*sorted(file_ids(data).items()), *(_stat_ids(p) for p in cas))


def seconds_until_due(data: DataDir, now: dt.datetime) -> float:
    """Seconds until the next leaf a renewal can extend is due, or a CA expires (renewing fails
    then, and says so); inf: none can be read."""
    nearest = float("inf")
    for leaf in node_leaves(data):
        try:
            cert, ca = read_dates(leaf.crt), read_dates(leaf.ca_crt)
        except (OSError, ValueError):
            continue
        nearest = min(nearest, (ca.not_after - now).total_seconds())
        if cert.not_after >= ca.not_after:
            continue  # ends with its CA: renewing cannot help (pki.check_ca_valid warns)
        nearest = min(nearest, (cert.controller_renews_at - now).total_seconds())
    return nearest


def renewal_work_due(data: DataDir, now: dt.datetime) -> bool:
    """Whether pki.renew_leaves has anything to do or to report: a leaf is due, or a file's
    dates cannot be read (renew_leaves says what is wrong with it)."""
    for leaf in node_leaves(data):
        try:
            read_dates(leaf.crt), read_dates(leaf.ca_crt)
        except (OSError, ValueError):
            return True
    return seconds_until_due(data, now) <= 0


class CertRenewer:
    def __init__(self, data: DataDir, lifetime: dt.timedelta, store: Store, name: str, member_id: str,
                 reload: Reload, metrics: Metrics | None = None, heartbeats: Heartbeats | None = None) -> None:
        self.data, self.lifetime, self.store = data, lifetime, store
        self.name, self.member_id, self.reload = name, member_id, reload
        self.metrics, self.heartbeats = metrics, heartbeats or Heartbeats()
        # What the API and the etcd client loaded when they started, just before this task.
        self._seen = file_ids(data)
        # The files the last renewal pass read, and when it found the next one due: while the files
        # stay the same, the next pass waits for that time (parsing 4 certificates, 2 CAs and their
        # keys every POLL was most of an idle controller's CPU). None: look at the next poll.
        self._looked: tuple[object, ...] | None = None
        self._next_due = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        self._handled: str | None = None
        self._standing: str | None = None  # the request id under CERTS_RENEW_REQUEST, kept by a watch
        self._request_read = False  # the watch has read the key once
        self._wake = asyncio.Event()  # the request key changed
        self._first_look = True
        self._last_error = ""

    async def run(self) -> None:
        # one round: the request key, a renewal with its retries, a reload, the answer (grant + put)
        watch = asyncio.create_task(self._follow_requests(), name="certs-request-watch")
        try:
            await self._run()
        finally:
            await cancel_and_wait([watch])

    async def _run(self) -> None:
        with self.heartbeats.loop("certs", every=POLL, work=RETRY_FOR + 4 * ETCD_CALL) as hb:
            while True:
                request = self._new_request()
                looked, now = pki_ids(self.data), dt.datetime.now(dt.timezone.utc)
                renewed: list[str] = []
                error: str | None = None
                if request is not None or looked != self._looked or now >= self._next_due:
                    renewed, error = await self._renew(force=request is not None)
                    self._plan(None if error else looked)
                await self._reload_changed()
                if request is not None:
                    await self._answer(request, renewed, error)
                hb.beat()
                wait = (self._next_due - dt.datetime.now(dt.timezone.utc)).total_seconds()
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: never swallows a cancel (tasks.py)
                    async with asyncio.timeout(min(POLL, max(0.2, wait))):
                        await self._wake.wait()
                self._wake.clear()

    def _plan(self, looked: tuple[object, ...] | None) -> None:
        """After a renewal pass: when the next one is due. `looked`: the files it read (None when
        it failed: the next poll tries again); a pass that renewed something changed them, so the
        next poll looks once more."""
        self._looked = looked
        now = dt.datetime.now(dt.timezone.utc)
        wait = seconds_until_due(self.data, now)
        self._next_due = dt.datetime.max.replace(tzinfo=dt.timezone.utc) if wait == float("inf") else \
            now + dt.timedelta(seconds=wait)

    def _count(self, outcome: str, n: int = 1) -> None:
        if self.metrics is not None and n:
            self.metrics.certificate_renewals.labels(outcome).inc(n)

    async def _renew(self, force: bool) -> tuple[list[str], str | None]:
        if not force and not renewal_work_due(self.data, dt.datetime.now(dt.timezone.utc)):
            return [], None  # the dates say so without cryptography (certfiles.py)

        async def attempt() -> dict[str, x509.Certificate]:
            from . import pki  # cryptography: only when there is PKI work

            try:
                return pki.renew_leaves(self.data, self.lifetime, force=force, due=pki.controller_renews_at)
            except OSError as e:
                raise RenewFailed(f"{e.strerror or e}: {e.filename or self.data.pki}") from None

        try:
            renewed = await retry(attempt, deadline=RETRY_FOR, backoff=RETRY_BACKOFF, what="certificate renewal")
        except (RenewFailed, Permanent) as e:
            if str(e) != self._last_error:  # once per distinct problem, not every poll
                log.error("cannot renew this node's certificates: %s", e)
            self._last_error = str(e)
            self._count("failed")
            return [], str(e)
        self._last_error = ""
        self._count("success", len(renewed))
        return sorted(renewed), None

    async def _reload_changed(self) -> None:
        now = file_ids(self.data)
        changed = frozenset(name for name, ids in now.items() if self._seen.get(name) != ids)
        if not changed:
            return
        try:
            await self.reload(changed)
        except Exception as e:  # noqa: BLE001 - tried again at the next poll; the old certificate is still valid
            log.error("cannot load the renewed certificates (%s): %s", ", ".join(sorted(changed)), e)
            self._count("reload-failed")
            return
        log.info("now using the renewed certificates: %s", ", ".join(sorted(changed)))
        self._seen = now

    async def _follow_requests(self) -> None:
        """Keep `_standing` current from a watch of the request key (no read every POLL) and wake
        the loop when it changes."""
        async for batch in self.store.follow_prefix(CERTS_RENEW_REQUEST):
            if not batch:  # the watch (re)started: what stands now
                kv = await retry(lambda: self.store.get(CERTS_RENEW_REQUEST), deadline=math.inf,
                                 backoff=RETRY_BACKOFF, what="reading the certificate renewal request",
                                 retry_on=(E.StoreError,))
                self._standing, self._request_read = _request_id(kv.value if kv else None), True
            for ev in batch:
                if ev.key == CERTS_RENEW_REQUEST:
                    self._standing = _request_id(ev.value if ev.kind == "put" else None)
            self._wake.set()

    def _new_request(self) -> str | None:
        """The id of a `certs renew --all` request not handled yet. The request standing when
        this controller starts counts as handled: the CLI that made it has reported on it."""
        if not self._request_read:
            return None  # the watch has not read the key yet
        request = self._standing
        if self._first_look:
            self._first_look, self._handled = False, request
            return None
        if request is None or request == self._handled:
            return None
        self._handled = request
        log.info("renewing every certificate of this node: asked by `certs renew --all` (%s)", request)
        return request

    async def _answer(self, request: str, renewed: list[str], error: str | None) -> None:
        body = {"request": request, "node": self.name, "memberID": self.member_id, "renewed": renewed,
                "error": error, "at": time.time()}
        try:
            lease = await self.store.grant_lease(ANSWER_TTL)
            await self.store.put(CERTS_RENEWED + self.member_id, json.dumps(body), lease=lease)
        except E.StoreError as e:
            log.warning("renewed certificates but could not tell `certs renew --all` (%s)", e)


def _request_id(raw: bytes | None) -> str | None:
    try:
        value: Any = json.loads(raw or b"null")
    except ValueError:
        return None
    rid = value.get("id") if isinstance(value, dict) else None
    return rid if isinstance(rid, str) and rid else None


def parse_answer(raw: bytes) -> dict[str, Any] | None:
    """An answer under CERTS_RENEWED, or None for one written by hand or corrupt."""
    try:
        value: Any = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("request"), str) else None
