"""The join API: an ASGI app (Starlette) served with TLS in the controller's event loop.

    GET  /v1beta1/ca              cluster CA {"cert": b64, "key": b64}        (bearer token)
    POST /v1beta1/etcd/members    {"node", "peerAddress"} -> etcd CA + initialCluster (bearer token)
    POST /v1/maintenance/defrag   {"memberID": hex, "trigger"?: manual|auto|nospace} -> defragment THIS
                                  controller's member (moving etcd leadership away first if it leads);
                                  client certificate signed by the cluster CA (maintenance/remote.py
                                  says why not a token)
    GET  /openapi.json            the schema of the join endpoints
    GET  /livez /readyz /metrics  health (health.py, `?verbose`) and Prometheus metrics (no auth)
    /version /api /apis /openapi/v3 /apis/etcd.etcdward.io/...
                                  the EtcdMember records as a Kubernetes API (kubeapi/), for
                                  client certificates signed by the cluster CA

Order of checks: method (405), size (413), auth (401), body (400), then the join itself
(409 conflict, 503 + Retry-After while queued or etcd is unavailable). A rejected request
never changes etcd.

etcdward extras that k0s clients ignore (the success body keeps k0s's shape):
    X-Etcdward-Heartbeat-Interval  (200) how often the joiner should repeat its request until
                                   its etcd is ready, so that its learner is not removed
    X-Etcdward-Learner-ID          (request) the member ID a repeated request keeps alive: it is
                                   answered 200 while that member exists, 409 once it is gone,
                                   and never queued (a heartbeat must not add a learner)
    X-Etcdward-Learner-Applied     (request, with the above) the applied index of the joiner's
                                   etcd: recorded with this voter's own (the learner's progress)
    X-Etcdward-Queue-Position,     (503 while queued) the request's place in line (1 = next) and
    X-Etcdward-Waiting-Behind      "<name> <member id>" of the learner it waits behind, if any
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from dataclasses import dataclass
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import health, tokens
from .addresses import canonical_host, host_port, is_member_name
from .kubeapi.routes import kube_routes
from .kubeapi.status import KubeError
from .kubeapi.tlsauth import PEER_CERT, ClusterCA, PeerCertProtocol, authenticate, request_any_client_certificate
from .maintenance.defrag import defrag_this_member
from .maintenance.remote import DEFRAG_PATH
from .join.server import JoinAbandoned, JoinBusy, JoinConflict, JoinService
from .joinschema import OPENAPI
from .memberops import MemberOps
from .metrics import DEFRAG_TRIGGERS, Metrics
from .paths import DataDir
from .store import Store
from .store import errors as E
from .errors import Permanent
from .voterdeps import VoterDeps


log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
DISCONNECT_CHECK = 0.001  # seconds: how long a disconnect check waits for a message already there
CLAIM_HEADER = "x-etcdward-learner-id"
APPLIED_HEADER = "x-etcdward-learner-applied"


@dataclass
class ApiDeps:
    store: Store
    data: DataDir
    join: JoinService
    health: health.Health  # /livez /readyz, and the figures /metrics reads when scraped
    metrics: Metrics  # /metrics: the controller's own registry


class BadRequest(Exception):
    pass


# "https://host:port" and nothing else: no whitespace or control characters (urlsplit would
# silently drop tabs/newlines and leading spaces, and etcd would then refuse the URL with an
# opaque error), no user info, path, query or fragment. IPv6 hosts in brackets.
_PEER_URL_RE = re.compile(r"(?i:https)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})/?", re.ASCII)


def validate_join(body: Any) -> tuple[str, str]:
    """(node, canonical peer URL) of a join request, or BadRequest naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("body: must be a JSON object with fields node and peerAddress")
    node, peer = body.get("node"), body.get("peerAddress")
    if not isinstance(node, str) or not node:
        raise BadRequest("node: required, a non-empty string")
    if not is_member_name(node):
        raise BadRequest(f"node: {node!r} is not a valid RFC 1123 name (lowercase letters, digits, '-', '.')")
    if not isinstance(peer, str) or not peer:
        raise BadRequest("peerAddress: required, a URL like https://10.0.0.2:2380")
    m = _PEER_URL_RE.fullmatch(peer)
    if not m:
        raise BadRequest(f"peerAddress: {peer[:300]!r} is not an https://host:port URL")
    host, port = m.group(1), int(m.group(2))
    if not 0 < port < 65536:
        raise BadRequest(f"peerAddress: port {port} is not in 1-65535")
    if host.startswith("["):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise BadRequest(f"peerAddress: {host!r} is not an IPv6 address") from None
    else:
        canonical = canonical_host(host)
        if canonical is None:
            raise BadRequest(f"peerAddress: {host!r} is neither an IP address nor a DNS name")
        host = canonical
    # Canonical form, so that the same peer URL always compares equal (idempotency by peer URL).
    return node, f"https://{host_port(host, port)}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build_app(deps: ApiDeps) -> Starlette:
    metrics = deps.metrics
    cluster_ca = ClusterCA(deps.data.ca_crt)  # read on the first client certificate

    def done(path: str, resp: Response, join_outcome: str = "") -> Response:
        metrics.api_requests.labels(path, str(resp.status_code)).inc()
        if join_outcome:
            metrics.join_requests.labels(join_outcome).inc()
        return resp

    async def authorized(request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, bearer = header.partition(" ")
        if scheme.lower() != "bearer" or not bearer:
            return PlainTextResponse("go away", 401)
        try:
            rec = await tokens.verify(deps.store, bearer.strip())
        except E.StoreError as e:
            return PlainTextResponse(f"cannot check the token now: {e}", 503, headers={"Retry-After": "2"})
        return None if rec else PlainTextResponse("go away", 401)

    async def client_gone(request: Request) -> bool:
        """Starlette's request.is_disconnected(), without anyio: its first cancel scope in a
        process loads anyio's asyncio backend, and the first join of a formation waited 0.03-0.1 s
        for that. The body is read by now, so the next message is the disconnect, if any."""
        try:
            message = await asyncio.wait_for(request.receive(), DISCONNECT_CHECK)
        except TimeoutError:
            return False
        return message.get("type") == "http.disconnect"

    async def read_json(request: Request) -> Any:
        if declared_length(request) > MAX_BODY:
            raise _TooLarge()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise _TooLarge()
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks) or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"body: malformed JSON ({e})") from None
        except RecursionError:  # "[[[[..." nested deeper than the parser's stack
            raise BadRequest("body: malformed JSON (nested too deeply)") from None

    async def get_ca(request: Request) -> Response:
        if (denied := await authorized(request)) is not None:
            return done("/v1beta1/ca", denied)
        body = {"cert": b64(deps.data.ca_crt.read_bytes()), "key": b64(deps.data.ca_key.read_bytes())}
        # An extra field (k0s clients ignore it): a joiner pinned to another cluster can refuse
        # before it asks for a learner it would never use.
        try:
            body["clusterID"] = format(await deps.join.cluster_id(), "x")
        except E.StoreError:
            pass
        return done("/v1beta1/ca", JSONResponse(body))

    async def post_members(request: Request) -> Response:
        path = "/v1beta1/etcd/members"
        try:
            if declared_length(request) > MAX_BODY:
                raise _TooLarge()
            if (denied := await authorized(request)) is not None:
                return done(path, denied, "rejected")
            node, peer_url = validate_join(await read_json(request))
            claim = claimed_member(request)
            applied = learner_applied(request)
        except _TooLarge:
            return done(path, PlainTextResponse(f"body larger than {MAX_BODY} bytes", 413), "rejected")
        except BadRequest as e:
            return done(path, PlainTextResponse(str(e), 400), "rejected")
        with metrics.join_request_duration.time():
            async def still_wanted() -> bool:
                return not await client_gone(request)

            try:
                ans = await deps.join.join(node, peer_url, still_wanted, claim=claim, learner_applied=applied)
            except JoinAbandoned as e:
                return done(path, PlainTextResponse(str(e), 503, headers={"Retry-After": "1"}), "abandoned")
            except JoinConflict as e:
                return done(path, PlainTextResponse(str(e), 409), "conflict")
            except JoinBusy as e:
                headers = {"Retry-After": str(e.retry_after), "X-Etcdward-Queue-Position": str(e.position)}
                if e.behind:
                    headers["X-Etcdward-Waiting-Behind"] = e.behind
                return done(path, PlainTextResponse(str(e), 503, headers=headers), "queued")
            except E.StoreError as e:
                return done(path, PlainTextResponse(f"etcd is not available: {e}", 503, headers={"Retry-After": "2"}),
                            "unavailable")
        ca_crt, ca_key = deps.data.etcd_cert("ca")
        return done(path, JSONResponse({
            "ca": {"cert": b64(ca_crt.read_bytes()), "key": b64(ca_key.read_bytes()), "saKey": None, "saPub": None},
            "initialCluster": ans.initial_cluster(),
            "clusterID": format(ans.cluster_id, "x"),
            "memberID": ans.member.hex_id,
            "name": ans.name,
        }, headers={"X-Etcdward-Heartbeat-Interval": f"{deps.join.heartbeat_interval:g}"}),
            "joined" if claim is None else "heartbeat")

    def count_defrag(trigger: str, outcome: str, seconds: float | None = None) -> None:
        """Manual defrags are counted here; the reconciler leader counts those it asks for."""
        if trigger == "manual":
            metrics.defrags.labels(trigger, outcome).inc()
            if seconds is not None:
                metrics.defrag_duration.labels(trigger).observe(seconds)

    async def post_defrag(request: Request) -> Response:
        try:
            user = authenticate(request.scope.get("state", {}).get(PEER_CERT), cluster_ca)
        except KubeError:
            return done(DEFRAG_PATH, PlainTextResponse("a client certificate signed by the cluster CA is required", 401))
        try:
            body = await read_json(request)
            want = body.get("memberID") if isinstance(body, dict) else None
            if not isinstance(want, str) or not re.fullmatch(r"[0-9a-f]{1,16}", want):
                raise BadRequest("memberID: required, the member ID in hex that this controller is expected to serve")
            trigger = body.get("trigger", "manual")
            if trigger not in DEFRAG_TRIGGERS:
                raise BadRequest(f"trigger: must be one of {', '.join(DEFRAG_TRIGGERS)} (default manual)")
        except _TooLarge:
            return done(DEFRAG_PATH, PlainTextResponse(f"body larger than {MAX_BODY} bytes", 413))
        except BadRequest as e:
            return done(DEFRAG_PATH, PlainTextResponse(str(e), 400))
        try:
            mine = (await deps.store.status()).member_id
            if int(want, 16) != mine:
                return done(DEFRAG_PATH, PlainTextResponse(f"this controller serves member {mine:x}, not {want}", 409))
            report = await defrag_this_member(deps.store)
        except E.StoreError as e:
            count_defrag(trigger, "failed")
            return done(DEFRAG_PATH, PlainTextResponse(f"etcd: {e}", 503, headers={"Retry-After": "2"}))
        count_defrag(trigger, "success", report.seconds)
        log.info("maintenance: %s (asked by %s)", report.line(), user)
        return done(DEFRAG_PATH, JSONResponse(report.as_dict()))

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def livez(request: Request) -> Response:
        code, body = health.render("livez", deps.health.live(), health.verbose(request.query_params))
        return PlainTextResponse(body, code)

    async def readyz(request: Request) -> Response:
        checks, _ = await deps.health.ready()
        code, body = health.render("readyz", checks, health.verbose(request.query_params))
        return PlainTextResponse(body, code)

    async def scrape(request: Request) -> Response:
        await deps.health.scrape()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[
        Route("/v1beta1/ca", get_ca, methods=["GET"]),
        Route(DEFRAG_PATH, post_defrag, methods=["POST"]),
        Route("/v1beta1/etcd/members", post_members, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", scrape, methods=["GET"]),
        *kube_routes(deps.store, cluster_ca),
    ])


class _TooLarge(Exception):
    pass


def claimed_member(request: Request) -> int | None:
    """The member ID a repeated join request keeps alive (X-Etcdward-Learner-ID), if given."""
    value = request.headers.get(CLAIM_HEADER)
    if value is None:
        return None
    try:
        member_id = int(value, 16)
    except ValueError:
        member_id = 0
    if not 0 < member_id < 2**64:
        raise BadRequest(f"X-Etcdward-Learner-ID: {value[:40]!r} is not a member ID in hex")
    return member_id


def learner_applied(request: Request) -> int | None:
    """The applied index a repeating joiner's etcd reported (X-Etcdward-Learner-Applied), if given."""
    value = request.headers.get(APPLIED_HEADER)
    if value is None:
        return None
    if not value.isdigit() or int(value) >= 2**64:
        raise BadRequest(f"X-Etcdward-Learner-Applied: {value[:40]!r} is not an applied index (a non-negative "
                         "integer)")
    return int(value)


def declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        raise BadRequest("Content-Length: not a number") from None


def server_ssl_context(data: DataDir) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(data.api_crt, data.api_key)
    # Ask for a client certificate (the kube API's credential), require none (join clients).
    request_any_client_certificate(ctx, data.ca_crt)
    return ctx


def reload_server_certificate(ctx: ssl.SSLContext, data: DataDir) -> None:
    """Serve the API certificate now on disk: OpenSSL copies a context's certificate into each
    new connection, so connections made from now on get it; open ones keep theirs. Runs in the
    event loop, which also runs every handshake: none sees the context half-loaded."""
    ctx.load_cert_chain(data.api_crt, data.api_key)


class _Server(uvicorn.Server):
    """uvicorn inside our loop: the controller owns the signal handlers."""

    def capture_signals(self) -> Any:  # type: ignore[override]
        return contextlib.nullcontext()

    async def main_loop(self) -> None:
        """uvicorn's own loop wakes every 0.1 s to look at should_exit and refresh the Date
        header once a second. This server is stopped by cancelling its task, and the Date
        header is refreshed when a request arrives (_DatedProtocol): no wake-up at all while
        nobody asks (a timer wake-up costs an idle controller ~0.03 % of a core)."""
        await self.on_tick(0)  # the first Date header and uvicorn's other defaults
        await asyncio.Future()


class _DatedProtocol(PeerCertProtocol):
    """Brings the server's Date header up to date before the bytes of a request are parsed:
    uvicorn's response takes its default headers from the server state when the request is
    read."""

    def data_received(self, data: bytes) -> None:
        _fresh_date(self.server_state, self.config)
        super().data_received(data)


def _fresh_date(state: Any, config: uvicorn.Config) -> None:
    """The headers are rebuilt only when the second changed (the date in them is the record)."""
    if not config.date_header:
        return
    date = formatdate(time.time(), usegmt=True).encode()
    if (b"date", date) not in state.default_headers:
        state.default_headers = [(b"date", date), *config.encoded_headers]


class ApiListenError(Permanent):
    """The join API's address:port cannot be listened on."""


async def serve_api(voter: VoterDeps, before_add: Callable[[str], Awaitable[bool]] | None = None,
                    tls: ssl.SSLContext | None = None) -> None:
    """Serve until cancelled; tls: the server context (server_ssl_context), kept by the caller to
    reload a renewed certificate into it."""
    store, data, cfg = voter.store, voter.data, voter.cfg
    tls = tls or server_ssl_context(data)
    join = JoinService(store, joiner_timeout=cfg.spec.reconciler.joiner_timeout, before_add=before_add,
                       ops=MemberOps(voter.metrics), metrics=voter.metrics)
    checks = health.Health(store, voter.ident.name, voter.member_id, voter.heartbeats, voter.metrics, data)
    deps = ApiDeps(store=store, data=data, join=join, health=checks, metrics=voter.metrics)
    config = uvicorn.Config(
        build_app(deps), host=cfg.api_address, port=cfg.api.port, log_level="warning", lifespan="off",
        ssl_certfile=str(data.api_crt), ssl_keyfile=str(data.api_key),
        ssl_context_factory=lambda _cfg, _default: tls,
        timeout_keep_alive=5, http=_DatedProtocol,
        log_config=None,  # uvicorn's records go through the controller's one handler (--log-format)
    )
    server = _Server(config)
    log.info("join API listening on https://%s:%d", cfg.api_address, cfg.api.port)
    try:
        await server.serve()
    finally:
        server.should_exit = True
    if not server.started:
        raise ApiListenError(f"join API could not listen on {cfg.api_address}:{cfg.api.port}")
    await asyncio.sleep(0)
