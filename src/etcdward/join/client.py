"""The joining side: token -> CA -> join request -> certificates -> a launch plan for etcd.

Every step is safe to repeat: a controller killed at any point restarts with no db and the
same token, asks again, and the server answers with the same learner (idempotent by peer URL).
What the server answered is kept in state/join.json until the node is a voter, so a restart
without the token refuses to bootstrap instead of creating a second cluster.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import ssl
import time
from typing import TYPE_CHECKING, Any

import httpx

from .. import identity, tokens
from ..identity import Identity
from ..crashpoints import crashpoint
from ..paths import atomic_write
from ..supervisor import LaunchPlan

if TYPE_CHECKING:
    from ..node import Controller

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT = 40.0  # the server may hold a queued request ~30 s
BACKOFF = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0)
MAX_RETRY_AFTER = 120.0


class JoinFailed(Exception):
    """A join that cannot succeed by retrying (bad token, bad request, conflict)."""


def client_ssl_context(ca_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class JoinClient:
    def __init__(self, token: tokens.JoinToken, timeout: float) -> None:
        self.token = token
        self.deadline = time.monotonic() + timeout
        self.http = httpx.AsyncClient(
            base_url=token.server, verify=client_ssl_context(token.ca_pem), trust_env=False,
            timeout=httpx.Timeout(ATTEMPT_TIMEOUT, connect=5.0),
            headers={"Authorization": f"Bearer {token.bearer}"},
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """Retry 5xx/503/connection errors (honouring Retry-After, with jitter) until the join
        deadline; 400/401/404/409 are final."""
        import asyncio

        attempt = 0
        while True:
            reason: str
            retry_after: float | None = None
            try:
                resp = await self.http.request(method, path, json=body)
            except httpx.HTTPError as e:
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if resp.status_code == 200:
                    try:
                        answer = resp.json()
                    except ValueError:
                        answer = None
                    if not isinstance(answer, dict):
                        raise JoinFailed(f"{self.token.server} answered {method} {path} with something that is "
                                         f"not a JSON object: {resp.text.strip()[:200]!r}; is it an etcdward join API?")
                    return answer
                text = resp.text.strip()[:500]
                if resp.status_code == 401:
                    raise JoinFailed(f"the join API refused the token (401 {text}): it is invalid, expired or "
                                     "was invalidated; create a new one with `etcdward token create --role controller`")
                if resp.status_code in (400, 404, 405, 409, 413):
                    raise JoinFailed(f"join request refused ({resp.status_code}): {text}")
                reason = f"{resp.status_code} {text}"
                if "retry-after" in resp.headers:
                    try:
                        retry_after = float(resp.headers["retry-after"])
                    except ValueError:
                        pass
                    if retry_after is not None and not 0 <= retry_after <= MAX_RETRY_AFTER:
                        retry_after = None  # negative, NaN or absurd: use our own backoff
            delay = retry_after if retry_after is not None else BACKOFF[min(attempt, len(BACKOFF) - 1)]
            delay = max(0.05, delay * random.uniform(0.8, 1.2))
            attempt += 1
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise JoinFailed(f"gave up joining via {self.token.server} after {attempt} attempts: {reason}")
            # The last wait ends at the deadline, with one more attempt: --join-timeout is honoured
            # in full instead of giving up as soon as the next backoff would cross it.
            delay = min(delay, remaining)
            level = logging.DEBUG if reason.startswith("503") else logging.INFO
            log.log(level, "%s %s: %s; retrying in %.1fs", method, path, reason, delay)
            await asyncio.sleep(delay)


async def perform_join(ctl: "Controller", name: str) -> LaunchPlan:
    try:
        token = tokens.decode(ctl.opts.token or "")
    except tokens.TokenError as e:
        raise JoinFailed(str(e)) from None
    data, cfg = ctl.data, ctl.cfg
    try:
        client = JoinClient(token, ctl.opts.join_timeout)
    except (ssl.SSLError, ValueError) as e:
        raise JoinFailed(f"join token is not valid: its CA cannot be used ({e})") from None
    # Pin the intent to join before the first request: from here on this node may get a
    # learner (the answer can be lost in a crash), so a restart without the token must
    # refuse instead of bootstrapping a second cluster. An earlier attempt's record is kept.
    _pin_join(data, {"name": name, "server": token.server})
    try:
        log.info("joining via %s as %s (%s)", token.server, name, cfg.peer_url)
        ca = await client.call("GET", "/v1beta1/ca")
        pinned = identity.load(data)
        theirs = ca.get("clusterID") if isinstance(ca, dict) else None
        if pinned and pinned.cluster_id and theirs and theirs != pinned.cluster_id:
            raise JoinFailed(
                f"this node is pinned to cluster {pinned.cluster_id} ({data.identity_file}) but the token joins "
                f"cluster {theirs}; run `etcdward reset` first if it should move to the other cluster")
        _write_pair(ca, data.ca_crt, data.ca_key, "cluster CA")
        crashpoint("join-before-post")
        ans = await client.call("POST", "/v1beta1/etcd/members", {"node": name, "peerAddress": cfg.peer_url})
    finally:
        await client.close()
    crashpoint("join-after-add")
    initial = ans.get("initialCluster")
    if not isinstance(initial, list) or not initial or not isinstance(ans.get("ca"), dict):
        raise JoinFailed(f"join API answered without initialCluster/ca: {str(ans)[:300]}")
    # Pin what we are joining before etcd starts: see the module docstring.
    _pin_join(data, {"name": name, "server": token.server, "clusterID": ans.get("clusterID"),
                     "memberID": ans.get("memberID"), "initialCluster": initial})
    from .. import pki  # cryptography is needed only from here on

    ca_crt, ca_key = data.etcd_cert("ca")
    _write_pair(ans["ca"], ca_crt, ca_key, "etcd CA")
    pki.ensure_node_pki(data, peer_address=cfg.peer_address, api_address=cfg.api_address, sans=cfg.api.sans,
                        hostname=identity.hostname(), create_cas=False)
    pinned = identity.load(data)
    ctl.ident = Identity(name=name, cluster_id=pinned.cluster_id if pinned else None)
    identity.save(data, ctl.ident)
    log.info("join accepted: learner %s (id %s) in cluster %s", name, ans.get("memberID"), ans.get("clusterID"))
    return LaunchPlan(name=name, initial_cluster=",".join(initial), state="existing")


def _pin_join(data, fields: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """Merge fields into state/join.json (values already there and not given stay)."""
    try:
        current = json.loads(data.join_file.read_text())
        if not isinstance(current, dict):
            current = {}
    except (OSError, ValueError):
        current = {}
    current.update({k: v for k, v in fields.items() if v is not None})
    atomic_write(data.join_file, json.dumps(current, indent=2) + "\n")


def _write_pair(body: dict[str, Any], crt, key, what: str) -> None:  # type: ignore[no-untyped-def]
    try:
        cert_pem, key_pem = base64.b64decode(body["cert"]), base64.b64decode(body["key"])
    except (KeyError, TypeError, ValueError):
        raise JoinFailed(f"join API answered without a usable {what}") from None
    from .. import pki
    if crt.exists() and key.exists() and crt.read_bytes() == cert_pem and key.read_bytes() == key_pem:
        return
    if crt.exists():
        log.warning("replacing %s with the %s of the cluster being joined", crt, what)
    pki.write_pem(cert_pem, key_pem, crt, key)
