"""The controller: wires config, PKI, the start decision, the etcd supervisor, the join API and
the reconciler into one event loop.

    run()      lock the data dir -> prepare -> decide -> (join | bootstrap | start) -> supervise
               -> serve until stopped; the lock is held until run() returns
    prepare()  checks everything that can be checked before touching the data dir
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import platform
import secrets
import signal
import socket
import time
from dataclasses import dataclass

from . import datalock, etcdversions, localstate
from . import logformat, startcost
from .config import Config
from .errors import EtcdwardError, Permanent
from .fence import ClusterGone, watch_cluster_gone
from .heartbeats import Heartbeats
from .crashpoints import crashpoint, crashpoint_after, delay_point
from .decision import Action, Decision, Token, decide
from .localstate import Identity, inspect_disk, move_aside
from .paths import DataDir, atomic_write, write_client_hint
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .metrics import Metrics
    from .pkiprocess import PKIWorker
    from .store import Store
from .tasks import cancel_and_wait
from .supervisor import LaunchPlan, MemberWasRemoved, Supervisor, SupervisorGaveUp, etcd_args, find_etcd

log = logging.getLogger(__name__)

READY_TIMEOUT = 120.0
READY_POLL = 0.05  # the first node's join API starts after this passes: joiners are waiting for it


class ControllerError(Permanent):
    """A fatal, explained reason to stop (printed as one line, exit code 1)."""


@dataclass
class Options:
    data: DataDir
    config: Config
    token: str | None = None  # None: no token given; "" or blank: given but empty (refused)
    join_timeout: float = 600.0
    pki: PKIWorker | None = None  # forked early for the start's PKI work (pkiprocess.py); None: forked then

    @property
    def token_state(self) -> Token:
        if self.token is None:
            return Token.NONE
        return Token.GIVEN if self.token.strip() else Token.BLANK


def check_port_free(address: str, port: int, what: str) -> None:
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as e:
            raise ControllerError(
                f"{what} {address}:{port} is not available ({e.strerror}); stop whatever uses it or "
                f"choose another port in the config") from None


def check_data_dir_writable(data: DataDir) -> None:
    try:
        data.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = data.root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ControllerError(f"data dir {data.root} is not writable ({e.strerror}); use --data-dir or fix permissions") from None


def lock_data_dir(data: DataDir) -> datalock.DataDirLock:
    try:
        return datalock.acquire(data, "controller")
    except datalock.DataDirBusy as e:
        raise ControllerError(f"{e} or use another --data-dir") from None
    except OSError as e:
        raise ControllerError(f"data dir {data.root} is not writable ({e.strerror}); use --data-dir or fix "
                              "permissions") from None


class Controller:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.data = opts.data
        self.cfg = opts.config.effective()
        self.sup: Supervisor | None = None
        self.store: Store | None = None
        self.ident: Identity | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # A joiner repeats its join request until its etcd is ready (join/client.py LearnerClaim).
        self._claim: asyncio.Task[None] | None = None
        self.etcd_version: etcdversions.Version | None = None  # of the binary, checked before etcd starts
        # /metrics (made once etcd is about to start: a joiner asks to join first) and /livez
        self.metrics: Metrics | None = None
        self.heartbeats = Heartbeats()

    # -- preflight ---------------------------------------------------------------------
    def decide(self) -> Decision:
        """The start decision from what is on disk now; ControllerError if it is a refusal."""
        d = decide(inspect_disk(self.data), self.opts.token_state)
        if d.action is Action.REFUSE:
            raise ControllerError(d.reason)
        if d.action is Action.JOIN:
            # A token that cannot be used is refused before anything on disk is touched (even the
            # lock file); it is read only when a join is needed, as in k0s.
            from . import tokens

            try:
                tokens.decode(self.opts.token or "")
            except tokens.TokenError as e:
                raise ControllerError(f"join failed: {e}") from None
        return d

    def prepare(self) -> tuple[Decision, str]:
        binary = find_etcd(self.cfg.etcd.binary or None)
        d = self.decide()  # again, now under the lock: this one is acted on
        # before anything is written: no skipped minor, no downgrade (state/etcd-version.json)
        self.etcd_version = etcdversions.check_start(self.data, binary)
        check_data_dir_writable(self.data)
        check_port_free("127.0.0.1", self.cfg.etcd.client_port, "etcd client port")
        check_port_free(self.cfg.peer_address, self.cfg.etcd.peer_port, "etcd peer address")
        check_port_free(self.cfg.api_address, self.cfg.api.port, "join API address")
        return d, binary

    # -- main --------------------------------------------------------------------------
    async def run(self) -> int:
        # A refusal (an empty token, a tombstone, ...) only reads the disk: it changes nothing,
        # not even the lock file. Then, before anything is written, moved aside or killed, the
        # lock: a second controller on a running node's data dir must leave it as it is.
        asyncio.get_running_loop().call_later(startcost.GC_ON_AT_THE_LATEST, startcost.collector_on)
        self.decide()
        etcdversions.check_start(self.data, find_etcd(self.cfg.etcd.binary or None))  # again in prepare()
        with lock_data_dir(self.data):
            return await self._run_locked()

    async def _run_locked(self) -> int:
        decision, binary = self.prepare()
        log.info("start decision: %s (%s)", decision.action.value.upper(), decision.reason)
        if decision.move_partial_aside:
            dest = move_aside(self.data.etcd)
            log.warning("moved partial etcd data dir aside to %s (no member/snap/db in it)", dest)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            # A join can wait minutes for the join API: SIGTERM must still stop it at once.
            plan_task = asyncio.create_task(self._plan(decision.action), name="plan")
            stop_task = asyncio.create_task(self._stop.wait(), name="stop-while-planning")
            await asyncio.wait({plan_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if not plan_task.done():
                await cancel_and_wait([plan_task])
                log.info("stopped before etcd was started")
                return 0
            stop_task.cancel()
            plan = plan_task.result()
            # etcd first: a new learner's peer connection opens etcd's ~5 s window before the
            # next join, and nothing below is needed to start it (a first joiner imports
            # prometheus_client here, ~0.04 s).
            self.sup = Supervisor(binary, etcd_args(self.cfg, self.data, plan), self.data)
            if decision.action is Action.JOIN:
                await delay_point("join-before-etcd-start")  # a slow etcd start, for tests
            await self.sup.start()
            if decision.action is Action.JOIN:  # etcd has created its data dir by then
                await crashpoint_after("join-after-etcd-start", 1.0)
            effective = self.cfg.to_yaml().encode()
            atomic_write(self.data.effective_config, effective)
            b = self.cfg.spec.backup
            write_client_hint(self.data, effective, self.cfg.etcd.client_port,
                              {"interval": b.interval, "dir": b.dir, "keep": b.keep,
                               "beforeMembershipChange": b.before_membership_change})
            self.metrics = new_metrics()  # the supervisor counts etcd restarts, the voter services the rest
            self.sup.metrics = self.metrics
            sup_task = asyncio.create_task(self.sup.run(), name="etcd-supervisor")
            # The store and the API are imported only now: a joiner sends its join request
            # first, and etcd takes about a second to start anyway.
            from . import voter  # noqa: F401  (imported while etcd boots, not on the joiner's first request)
            from .store import local_store

            await wait_for_port("127.0.0.1", self.cfg.etcd.client_port, self.sup)
            self.store = local_store(self.data, self.cfg.etcd.client_port)
            await self.store.connect()
            ready = asyncio.create_task(self._wait_ready(decision.action), name="wait-ready")
            stop = asyncio.create_task(self._stop.wait(), name="stop")
            fence = self._start_fence(decision.action)
            done, _ = await asyncio.wait({sup_task, ready, stop, *fence}, return_when=asyncio.FIRST_COMPLETED)
            await cancel_and_wait(fence)
            if stop in done:
                return 0
            if sup_task in done:
                sup_task.result()  # raises the supervisor's reason
            for t in fence & done:
                await cancel_and_wait([ready])
                t.result()  # raises ClusterGone
            ready.result()
            await self._stop_claim()  # a voter now: nothing left to keep alive
            await self._after_ready()
            asyncio.get_running_loop().call_later(startcost.GC_ON_AFTER_READY, startcost.collector_on)
            done, _ = await asyncio.wait({sup_task, stop, *self._tasks}, return_when=asyncio.FIRST_COMPLETED)
            if sup_task in done:
                sup_task.result()
            for t in done:
                if t is not stop and t is not sup_task and t.exception():
                    raise t.exception()  # type: ignore[misc]
            if not stop.done():  # a service task returned: every one runs until cancelled
                ended = ", ".join(sorted(t.get_name() for t in done if t is not sup_task))
                raise ControllerError(f"internal error: the {ended} task ended on its own; stopping this "
                                      "controller (a service manager restarts it)")
            return 0
        except MemberWasRemoved as e:
            await self.shutdown()  # etcd must be stopped before its data dir is moved aside
            return self._removed(str(e))
        except ClusterGone as e:
            await self.shutdown()
            self._removed(str(e))
            raise ControllerError(str(e)) from None
        except SupervisorGaveUp as e:
            raise ControllerError(str(e)) from None
        finally:
            await self.shutdown()

    def _start_fence(self, action: Action) -> set[asyncio.Task[None]]:
        """On existing data: until etcd is ready, watch whether the cluster of that data is gone
        (restored or rebuilt elsewhere; fence.py)."""
        if action is not Action.START:
            return set()
        pinned = self.ident.cluster_id if self.ident else None
        return {asyncio.create_task(watch_cluster_gone(self.data, self.cfg, pinned), name="fence")}

    async def _plan(self, action: Action) -> LaunchPlan:
        pinned = localstate.load_identity(self.data)
        name = localstate.resolve_name(pinned, self.cfg.etcd.name)
        if action is Action.JOIN:
            # the join protocol owns the joining side (imported only by a joiner)
            from .join.client import JoinFailed, perform_join

            try:
                joined = await perform_join(self.data, self.cfg, self.opts.token or "", self.opts.join_timeout, name,
                                            while_queued=startcost.import_for_etcd_start, pki=self.opts.pki)
            except JoinFailed as e:
                raise ControllerError(f"join failed: {e}") from None
            self.ident = joined.ident
            self._claim = asyncio.create_task(joined.claim.keep(self._applied_index), name="learner-claim")
            return joined.plan
        from .pkiprocess import PKIWorker

        hostname = localstate.hostname()
        with self.opts.pki or PKIWorker() as pki:
            pki.ensure_node_pki(self.data, peer_address=self.cfg.peer_address, api_address=self.cfg.api_address,
                                sans=self.cfg.api.sans, hostname=hostname, create_cas=True,
                                ca_lifetime=self.cfg.spec.pki.ca_lifetime_td, cert_lifetime=self.cfg.spec.pki.cert_lifetime_td)
        self.ident = (pinned or Identity(name=name)).with_(name=name)
        localstate.save_identity(self.data, self.ident)
        if action is Action.BOOTSTRAP:
            return LaunchPlan(name=name, initial_cluster=f"{name}={self.cfg.peer_url}", state="new",
                              cluster_token=f"etcdward-{secrets.token_hex(8)}")
        return LaunchPlan(name=name)

    async def _applied_index(self) -> int | None:
        """The local etcd's applied index (None until it answers): a learner's progress, which
        the learner claim sends with each repeated join request."""
        if self.store is None:
            return None
        from .store import errors as E

        try:
            return (await self.store.status(timeout=2.0)).raft_applied_index
        except E.StoreError:
            return None

    async def _wait_ready(self, action: Action) -> None:
        """Until a linearizable read passes (a learner passes only once promoted)."""
        from .store import errors as E

        assert self.store and self.sup
        deadline = time.monotonic() + (self.opts.join_timeout if action is Action.JOIN else READY_TIMEOUT)
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                await self.store.ready()
                break
            except E.StoreError as e:
                last = e
                await asyncio.sleep(READY_POLL)
        else:
            raise ControllerError(f"etcd did not become ready in time: {last}")
        crashpoint("join-after-promotion")
        status = await self.store.status()
        cluster_id, member_id = format(status.cluster_id, "x"), format(status.member_id, "x")
        pinned = localstate.load_identity(self.data)
        if pinned and pinned.cluster_id and pinned.cluster_id != cluster_id:
            raise ControllerError(
                f"etcd reports cluster ID {cluster_id} but this node is pinned to cluster {pinned.cluster_id} "
                f"({self.data.identity_file}); refusing to run in a different cluster")
        name = localstate.resolve_name(pinned, self.cfg.etcd.name)
        self.ident = Identity(name=name, cluster_id=cluster_id, member_id=member_id)
        localstate.save_identity(self.data, self.ident)
        localstate.clear_join_pin(self.data)  # the join is complete: this node is a voter
        if self.etcd_version is not None:
            await etcdversions.pin_after_start(self.data, self.cfg.etcd.client_port, self.etcd_version)
        log.info("etcd ready: member %s (id %s) in cluster %s", name, member_id, cluster_id)

    async def _after_ready(self) -> None:
        """Start what runs on a voting member: the join API, the reconciler, liveness, self."""
        from .voter import start_voter_services
        from .voterdeps import VoterDeps

        assert self.store is not None and self.ident is not None and self.ident.member_id
        assert self.metrics is not None
        self.metrics.set_build_info(package_version(), platform.python_version(), str(self.etcd_version or ""))
        self._tasks.extend(start_voter_services(VoterDeps(store=self.store, cfg=self.cfg, data=self.data,
                                                          ident=self.ident, etcd_version=self.etcd_version,
                                                          restart_etcd=self.sup.restart if self.sup else None,
                                                          metrics=self.metrics, heartbeats=self.heartbeats)))

    def _removed(self, why: str) -> int:
        localstate.write_tombstone(self.data, self.ident, why)
        return 0

    async def _stop_claim(self) -> None:
        if self._claim is not None:
            await cancel_and_wait([self._claim])
            self._claim = None

    async def shutdown(self) -> None:
        await self._stop_claim()
        await cancel_and_wait(self._tasks)
        if self.store:
            with contextlib.suppress(Exception):
                await self.store.close()
        if self.sup:
            await self.sup.stop()



def new_metrics() -> Metrics:
    from prometheus_client import CollectorRegistry

    from .metrics import Metrics

    return Metrics(CollectorRegistry())


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("etcdward")
    except PackageNotFoundError:
        return "unknown"


def run_controller(data: DataDir, cfg: Config, token: str | None, join_timeout: float, verbose: bool,
                   pki: PKIWorker | None = None) -> int:
    """The controller's one error boundary: every failure becomes one line on stderr and exit
    code 1; the traceback of an unexpected one is logged only with --verbose."""
    try:
        return asyncio.run(Controller(Options(data=data, config=cfg, token=token, join_timeout=join_timeout,
                                                   pki=pki)).run())
    except EtcdwardError as e:
        why = str(e)
    except OSError as e:
        why = describe_os_error(e, data)
    except Exception as e:  # a bug: still one line, the traceback only on request
        log.debug("unexpected error", exc_info=True)
        why = f"unexpected error ({type(e).__name__}: {e})" + ("" if verbose else "; --verbose shows the traceback")
    logformat.fatal(f"etcdward controller: {why}")
    return 1


def describe_os_error(e: OSError, data: DataDir) -> str:
    """One line for a failed file operation, naming the file and, where known, what to do."""
    where = f" {e.filename}" if e.filename else ""
    if e.errno == errno.ENOSPC:
        return (f"no space left on device (writing{where}); free space on the filesystem of {data.root} and start "
                "the controller again")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{e.strerror}{where}: the controller needs to write {data.root}"
    return f"{e.strerror or e}{where}"


async def wait_for_port(host: str, port: int, sup: Supervisor, timeout: float = 30.0) -> None:
    """Until etcd accepts TCP connections: a call made earlier would be refused, and its
    caller would try again only at its own pace (~0.5 s and more)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and sup.alive():
        try:
            _, w = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.02)
            continue
        w.close()
        return

