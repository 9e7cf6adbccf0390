"""The joining side: token -> CA -> join request -> certificates -> a launch plan for etcd.

Every step is safe to repeat: a controller killed at any point restarts with no db and the
same token, asks again, and the server answers with the same learner (idempotent by peer URL).
What the server answered is kept in state/join.json until the node is a voter, so a restart
without the token refuses to bootstrap instead of creating a second cluster.

From the answer until its etcd is ready the joiner keeps its claim on the learner
(LearnerClaim): it repeats the same request every few seconds, so that the cluster can tell a
joiner that is still starting from one that is gone (whose learner it removes after
spec.reconciler.joinerTimeout). While it waits in the join queue it logs at INFO where it
stands, about every 10 s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import localstate, tokens
from ..certfiles import write_pem
from ..config import Config
from ..localstate import Identity, pin_join
from ..pkiprocess import JOINER_NICE, PKIWorker
from ..paths import DataDir
from ..crashpoints import crashpoint
from ..errors import Permanent, Temporary
from ..retry import retry
from ..supervisor import LaunchPlan
from .https import Answer, HTTPError, JoinHTTP


log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT = 40.0  # the server holds a queued request ~10 s (older servers ~30 s)
BACKOFF = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0)
PROGRESS_EVERY = 9.0  # at most one INFO "waiting" line this often (the server answers every ~10 s)
MEMBERS = "/v1beta1/etcd/members"
CLAIM_INTERVAL = 5.0  # repeat the join request this often, unless the server asks otherwise
CLAIM_TIMEOUT = 10.0
# A join request unanswered this long waits in line: the first joiner's answer comes in ~0.2 s,
# one in line waits at least etcd's ~5 s between two learner adds. Then `while_queued` runs.
QUEUED_AFTER = 0.5


class JoinFailed(Permanent):
    """A join that cannot succeed by retrying (bad token, bad request, conflict). `refused`:
    the join API answered that it refuses the request, so that request added no learner."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def client_ssl_context(ca_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class JoinClient:
    def __init__(self, token: tokens.JoinToken, timeout: float) -> None:
        self.token = token
        self.deadline = time.monotonic() + timeout
        ctx = client_ssl_context(token.ca_pem)
        try:
            self.http = JoinHTTP(token.server, ctx, {"Authorization": f"Bearer {token.bearer}"},
                                 timeout=ATTEMPT_TIMEOUT, connect=5.0)
        except ValueError as e:
            raise JoinFailed(f"join token is not valid: its server {e}") from None

    async def close(self) -> None:
        await self.http.close()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return (await self.call_with_headers(method, path, body))[0]

    async def call_with_headers(self, method: str, path: str,
                                body: Any = None) -> tuple[dict[str, Any], Mapping[str, str]]:
        """Retry 5xx/503/connection errors (honouring Retry-After, with jitter) until the join
        deadline, through the one retry helper; 400/401/404/405/409/413 are final."""

        async def once() -> tuple[dict[str, Any], Mapping[str, str]]:
            try:
                resp = await self.http.request(method, path, body)
            except HTTPError as e:
                raise JoinRetry(str(e)) from None
            if resp.status == 200:
                try:
                    answer = resp.json()
                except ValueError:
                    answer = None
                if not isinstance(answer, dict):
                    raise JoinFailed(f"{self.token.server} answered {method} {path} with something that is "
                                     f"not a JSON object: {resp.text.strip()[:200]!r}; is it an etcdward join API?")
                return answer, resp.headers
            text = resp.text.strip()[:500]
            if resp.status == 401:
                raise JoinFailed(f"the join API refused the token (401 {text}): it is invalid, expired or "
                                 "was invalidated; create a new one with `etcdward token create --role controller`",
                                 refused=True)
            if resp.status in (400, 404, 405, 409, 413):
                raise JoinFailed(f"join request refused ({resp.status}): {text}", refused=True)
            raise JoinRetry(f"{resp.status} {text}", after=retry_after(resp.headers), response=resp)

        report = WaitReporter(method, path)
        try:
            return await retry(once, deadline=self.deadline - time.monotonic(), backoff=BACKOFF, jitter=0.2,
                               what=f"{method} {path}", on_retry=report)
        except JoinRetry as e:
            raise JoinFailed(f"gave up joining via {self.token.server} after {report.attempts + 1} attempts: "
                             f"{e}") from None


class JoinRetry(Temporary):
    """A join request to try again: a 5xx (503 while queued) or a connection error."""

    def __init__(self, message: str, after: float | None = None, response: Answer | None = None) -> None:
        super().__init__(message, after)
        self.response = response


def retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers.get("retry-after", ""))
    except ValueError:
        return None  # absent or not a number (the retry helper also ignores negative and absurd ones)


class WaitReporter:
    """Progress lines while the join API keeps us waiting: every retry that is not a queued 503
    at INFO, a queued 503 at INFO at most every PROGRESS_EVERY seconds with where it stands."""

    def __init__(self, method: str, path: str) -> None:
        self.what = f"{method} {path}"
        self.attempts = 0
        self.since, self.since_wall = time.monotonic(), time.strftime("%H:%M:%S")
        self.last_progress = -PROGRESS_EVERY

    def __call__(self, exc: BaseException, attempt: int, delay: float) -> None:
        self.attempts = attempt
        resp = getattr(exc, "response", None)
        now = time.monotonic()
        if resp is None or resp.status != 503:
            log.info("%s: %s; retrying in %.1fs", self.what, exc, delay)
        elif now - self.last_progress >= PROGRESS_EVERY:
            # What an operator watching a waiting joiner needs: where it stands, and since when.
            self.last_progress = now
            log.info("join: waiting since %s (%.0fs): %s; retrying in %.1fs", self.since_wall, now - self.since,
                     _where(resp.headers, str(exc)), delay)
        else:
            log.debug("%s: %s; retrying in %.1fs", self.what, exc, delay)


def _where(headers: Mapping[str, str], reason: str) -> str:
    """Where a queued join stands, from a 503 answer's X-Etcdward-* headers (else its text)."""
    position = headers.get("x-etcdward-queue-position", "")
    if not position.isdigit():
        return reason
    out = f"place {position} in line"
    name, _, member_id = headers.get("x-etcdward-waiting-behind", "").partition(" ")
    if name:
        out += f", behind learner {name} (id {member_id})"
    return out


@dataclass(frozen=True)
class LearnerClaim:
    """What keeps this node's learner from being removed while its etcd starts."""

    token: tokens.JoinToken
    request: dict[str, str]  # the join request, repeated as it was
    member_id: str  # hex, as the server answered
    interval: float

    async def keep(self, applied: Callable[[], Awaitable[int | None]] | None = None) -> None:
        """Repeat the join request every `interval` seconds until cancelled (the controller
        stops it once its etcd is ready) or the server says the learner is gone. `applied`
        reads the local etcd's applied index: sent along, it is the learner's progress (a
        learner cannot write to etcd itself)."""
        if not self.member_id:
            return  # a server that named no member (not etcdward): nothing to name in a repeat
        headers = {"Authorization": f"Bearer {self.token.bearer}", "X-Etcdward-Learner-ID": self.member_id}
        http = JoinHTTP(self.token.server, client_ssl_context(self.token.ca_pem), headers, timeout=CLAIM_TIMEOUT)
        try:
            failing = False
            while True:
                await asyncio.sleep(self.interval)
                index = await applied() if applied is not None else None
                extra = {} if index is None else {"X-Etcdward-Learner-Applied": str(index)}
                try:
                    resp = await http.request("POST", MEMBERS, self.request, headers=extra)
                    problem = "" if resp.status == 200 else f"{resp.status} {resp.text.strip()[:300]}"
                except HTTPError as e:
                    resp, problem = None, str(e)
                if resp is not None and resp.status == 409:
                    log.warning("join API: %s", problem)
                    return
                if problem and not failing:
                    log.warning("could not tell the join API that learner %s is still starting (%s); trying "
                                "every %gs: if etcd does not start before the cluster's joinerTimeout, the learner "
                                "is removed", self.member_id, problem, self.interval)
                elif problem:
                    log.debug("learner claim: %s", problem)
                elif failing:
                    log.info("the join API hears again that learner %s is still starting", self.member_id)
                else:
                    log.debug("told the join API that learner %s is still starting", self.member_id)
                failing = bool(problem)
        finally:
            await http.close()


@dataclass(frozen=True)
class JoinResult:
    """What a successful join request gave: how to start etcd, the identity to run under,
    and the claim to keep until etcd is ready."""

    plan: LaunchPlan
    ident: Identity
    claim: LearnerClaim


def claim_interval(headers: Mapping[str, str]) -> float:
    try:
        value = float(headers.get("x-etcdward-heartbeat-interval", ""))
    except ValueError:
        return CLAIM_INTERVAL  # a server that does not say: k0s or an older etcdward
    return min(30.0, max(0.2, value)) if value == value else CLAIM_INTERVAL


async def perform_join(data: DataDir, cfg: Config, token_text: str, join_timeout: float, name: str,
                       while_queued: Callable[[], None] | None = None, pki: PKIWorker | None = None) -> JoinResult:
    """Join as `name` with the token; returns what was learned (launch plan, identity, claim).
    `while_queued` runs in a thread of its own if the request waits in line (QUEUED_AFTER).
    `pki`: the child that signs this node's certificates (pkiprocess.py), forked at start-up;
    without it, one is forked as the join request goes out."""
    try:
        token = tokens.decode(token_text)
    except tokens.TokenError as e:
        raise JoinFailed(str(e)) from None
    try:
        client = JoinClient(token, join_timeout)
    except (ssl.SSLError, ValueError) as e:
        raise JoinFailed(f"join token is not valid: its CA cannot be used ({e})") from None
    # Pin the intent to join before the first request: from here on this node may get a
    # learner (the answer can be lost in a crash), so a restart without the token must
    # refuse instead of bootstrapping a second cluster. An earlier attempt's record is kept.
    pin_join(data, {"name": name, "server": token.server})
    try:
        return await _ask(client, data, cfg, name, token, while_queued, pki)
    except JoinFailed as e:
        if e.refused:  # the join API said no: this request added no learner; the next start says so
            pin_join(data, {"refused": str(e)[:500]})
        raise
    finally:
        await client.close()


async def _ask(client: JoinClient, data: DataDir, cfg: Config, name: str, token: tokens.JoinToken,
               while_queued: Callable[[], None] | None, pki: PKIWorker | None) -> JoinResult:
    log.info("joining via %s as %s (%s)", token.server, name, cfg.peer_url)
    ca = await client.call("GET", "/v1beta1/ca")
    pinned = localstate.load_identity(data)
    theirs = ca.get("clusterID") if isinstance(ca, dict) else None
    if pinned and pinned.cluster_id and theirs and theirs != pinned.cluster_id:
        raise JoinFailed(
            f"this node is pinned to cluster {pinned.cluster_id} ({data.identity_file}) but the token joins "
            f"cluster {theirs}; run `etcdward reset` first if it should move to the other cluster")
    _write_pair(ca, data.ca_crt, data.ca_key, "cluster CA")
    crashpoint("join-before-post")
    request = {"node": name, "peerAddress": cfg.peer_url}
    # The child that signs this node's certificates once the answer brings the etcd CA: its
    # cryptography import overlaps the wait for the answer (pkiprocess.py).
    with contextlib.nullcontext(pki) if pki is not None else PKIWorker(nice=JOINER_NICE) as worker:
        ans, headers = await _post(client, request, while_queued)
        return _accepted(data, cfg, name, token, worker, request, ans, headers)


async def _post(client: JoinClient, request: dict[str, str],
                while_queued: Callable[[], None] | None) -> tuple[dict[str, Any], Mapping[str, str]]:
    post = asyncio.ensure_future(client.call_with_headers("POST", MEMBERS, request))
    try:
        if while_queued is not None and not (await asyncio.wait({post}, timeout=QUEUED_AFTER))[0]:
            # A thread, not this loop: the answer must be read the moment it comes. It ends by
            # itself; what it fails at is done (and fails) again where it is needed.
            threading.Thread(target=_quietly, args=(while_queued,), name="while-queued", daemon=True).start()
        return await post
    finally:
        if not post.done():
            post.cancel()


def _quietly(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:  # noqa: BLE001 - see _post
        log.debug("work while waiting in line failed", exc_info=True)


def _accepted(data: DataDir, cfg: Config, name: str, token: tokens.JoinToken, pki: PKIWorker, request: dict[str, str],
              ans: dict[str, Any], headers: Mapping[str, str]) -> JoinResult:
    """The join answer: pinned, the etcd CA and this node's certificates written, the identity saved."""
    crashpoint("join-after-add")
    initial = ans.get("initialCluster")
    if not isinstance(initial, list) or not initial or not isinstance(ans.get("ca"), dict):
        raise JoinFailed(f"join API answered without initialCluster/ca: {str(ans)[:300]}")
    member_id = str(ans.get("memberID") or "")  # k0s names none
    if member_id and not re.fullmatch(r"[0-9a-f]{1,16}", member_id):  # it goes into a header of the claim
        raise JoinFailed(f"join API answered with a memberID that is not a member ID in hex: {member_id[:40]!r}")
    # Pin what we are joining before etcd starts: see the module docstring.
    pin_join(data, {"name": name, "server": token.server, "clusterID": ans.get("clusterID"),
                     "memberID": ans.get("memberID"), "initialCluster": initial})
    ca_crt, ca_key = data.etcd_cert("ca")
    _write_pair(ans["ca"], ca_crt, ca_key, "etcd CA")
    pki.ensure_node_pki(data, peer_address=cfg.peer_address, api_address=cfg.api_address, sans=cfg.api.sans,
                        hostname=localstate.hostname(), create_cas=False, cert_lifetime=cfg.spec.pki.cert_lifetime_td)
    pinned = localstate.load_identity(data)
    ident = Identity(name=name, cluster_id=pinned.cluster_id if pinned else None)
    localstate.save_identity(data, ident)
    log.info("join accepted: learner %s (id %s) in cluster %s", name, member_id, ans.get("clusterID"))
    claim = LearnerClaim(token=token, request=request, member_id=member_id, interval=claim_interval(headers))
    return JoinResult(plan=LaunchPlan(name=name, initial_cluster=",".join(initial), state="existing"),
                      ident=ident, claim=claim)


def _write_pair(body: dict[str, Any], crt, key, what: str) -> None:  # type: ignore[no-untyped-def]
    try:
        cert_pem, key_pem = base64.b64decode(body["cert"]), base64.b64decode(body["key"])
    except (KeyError, TypeError, ValueError):
        raise JoinFailed(f"join API answered without a usable {what}") from None
    if crt.exists() and key.exists() and crt.read_bytes() == cert_pem and key.read_bytes() == key_pem:
        return
    if crt.exists():
        log.warning("replacing %s with the %s of the cluster being joined", crt, what)
    write_pem(cert_pem, key_pem, crt, key)
