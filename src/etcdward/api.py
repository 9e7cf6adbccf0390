"""The join API: an ASGI app (Starlette) served with TLS in the controller's event loop.

    GET  /v1beta1/ca              cluster CA {"cert": b64, "key": b64}        (bearer token)
    POST /v1beta1/etcd/members    {"node", "peerAddress"} -> etcd CA + initialCluster (bearer token)
    GET  /openapi.json            the schema of the above
    GET  /livez /readyz /metrics  health and Prometheus metrics (no auth)
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from cryptography import x509
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import tokens
from .addresses import canonical_host, host_port, is_member_name
from .kubeapi.routes import kube_routes
from .kubeapi.tlsauth import PeerCertProtocol, request_any_client_certificate
from .join.server import JoinAbandoned, JoinBusy, JoinConflict, JoinService
from .paths import DataDir
from .store import Store
from .store import errors as E
from .errors import Permanent
from .voterdeps import VoterDeps


log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
CLAIM_HEADER = "x-etcdward-learner-id"


@dataclass
class ApiDeps:
    store: Store
    data: DataDir
    join: JoinService
    ready: Callable[[], Awaitable[str | None]]  # None = ready, else the reason
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)  # /metrics: the controller's own


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
    registry = deps.registry
    requests_total = Counter("etcdward_api_requests", "join API requests", ["path", "code"], registry=registry)
    join_seconds = Histogram("etcdward_join_request_seconds", "time to answer a join request", registry=registry)

    def done(path: str, resp: Response) -> Response:
        requests_total.labels(path, str(resp.status_code)).inc()
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
                return done(path, denied)
            node, peer_url = validate_join(await read_json(request))
            claim = claimed_member(request)
        except _TooLarge:
            return done(path, PlainTextResponse(f"body larger than {MAX_BODY} bytes", 413))
        except BadRequest as e:
            return done(path, PlainTextResponse(str(e), 400))
        with join_seconds.time():
            async def still_wanted() -> bool:
                return not await request.is_disconnected()

            try:
                ans = await deps.join.join(node, peer_url, still_wanted, claim=claim)
            except JoinAbandoned as e:
                return done(path, PlainTextResponse(str(e), 503, headers={"Retry-After": "1"}))
            except JoinConflict as e:
                return done(path, PlainTextResponse(str(e), 409))
            except JoinBusy as e:
                headers = {"Retry-After": str(e.retry_after), "X-Etcdward-Queue-Position": str(e.position)}
                if e.behind:
                    headers["X-Etcdward-Waiting-Behind"] = e.behind
                return done(path, PlainTextResponse(str(e), 503, headers=headers))
            except E.StoreError as e:
                return done(path, PlainTextResponse(f"etcd is not available: {e}", 503, headers={"Retry-After": "2"}))
        ca_crt, ca_key = deps.data.etcd_cert("ca")
        return done(path, JSONResponse({
            "ca": {"cert": b64(ca_crt.read_bytes()), "key": b64(ca_key.read_bytes()), "saKey": None, "saPub": None},
            "initialCluster": ans.initial_cluster(),
            "clusterID": format(ans.cluster_id, "x"),
            "memberID": ans.member.hex_id,
            "name": ans.name,
        }, headers={"X-Etcdward-Heartbeat-Interval": f"{deps.join.heartbeat_interval:g}"}))

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def livez(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        reason = await deps.ready()
        return PlainTextResponse("ok" if reason is None else reason, 200 if reason is None else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[
        Route("/v1beta1/ca", get_ca, methods=["GET"]),
        Route("/v1beta1/etcd/members", post_members, methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *kube_routes(deps.store, x509.load_pem_x509_certificate(deps.data.ca_crt.read_bytes())),
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


def declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        raise BadRequest("Content-Length: not a number") from None


_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_NODE_PATTERN = f"^{_LABEL}(\\.{_LABEL})*$"
_PEER_PATTERN = "^https://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}/?$"
_ERR = {"content": {"text/plain": {"schema": {"type": "string"}}}}
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "etcdward join API", "version": "v1beta1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "KeyPair": {"type": "object", "required": ["cert", "key"], "properties": {
                "cert": {"type": "string", "format": "byte"}, "key": {"type": "string", "format": "byte"},
                "clusterID": {"type": "string", "description": "GET /v1beta1/ca only (an etcdward extra)"}}},
            "JoinRequest": {"type": "object", "required": ["node", "peerAddress"], "properties": {
                "node": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _NODE_PATTERN,
                         "description": "etcd member name: a lowercase RFC 1123 subdomain"},
                "peerAddress": {"type": "string", "pattern": _PEER_PATTERN, "example": "https://10.0.0.2:2380",
                                "description": "the joiner's full etcd peer URL, https://host:port"}}},
            "JoinResponse": {"type": "object", "required": ["ca", "initialCluster"], "properties": {
                "ca": {"$ref": "#/components/schemas/KeyPair"},
                "initialCluster": {"type": "array", "items": {"type": "string"}},
                "clusterID": {"type": "string"}, "memberID": {"type": "string"}, "name": {"type": "string"}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/v1beta1/ca": {"get": {"summary": "the cluster CA", "responses": {
            "200": {"description": "CA", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/KeyPair"}}}},
            "401": {"description": "bad token", **_ERR}}}},
        "/v1beta1/etcd/members": {"post": {
            "summary": "add this node as an etcd learner (idempotent by peer URL)",
            "parameters": [{"name": "X-Etcdward-Learner-ID", "in": "header", "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{1,16}$"},
                            "description": "etcdward joiners repeat their request with the member ID they got, "
                                           "until their etcd is ready: 200 while it exists, 409 once it is gone"}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/JoinRequest"}}}},
            "responses": {
                "200": {"description": "joined", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/JoinResponse"}}}},
                "400": {"description": "invalid request; the message names the field", **_ERR},
                "401": {"description": "bad token", **_ERR},
                "409": {"description": "conflicts with an existing member", **_ERR},
                "413": {"description": "body too large", **_ERR},
                "503": {"description": "queued (the text says the place in line and the learner it waits "
                                       "behind; also in X-Etcdward-Queue-Position and X-Etcdward-Waiting-Behind) "
                                       "or etcd unavailable; retry after Retry-After", **_ERR}}}},
    },
}


def server_ssl_context(data: DataDir) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(data.api_crt, data.api_key)
    # Ask for a client certificate (the kube API's credential), require none (join clients).
    request_any_client_certificate(ctx, data.ca_crt)
    return ctx


class _Server(uvicorn.Server):
    """uvicorn inside our loop: the controller owns the signal handlers."""

    def capture_signals(self) -> Any:  # type: ignore[override]
        return contextlib.nullcontext()

    async def main_loop(self) -> None:
        """uvicorn's own loop wakes every 0.1 s to look at should_exit; this server is stopped by
        cancelling its task, so a tick a second is enough (each refreshes the Date header)."""
        while not await self.on_tick(0):  # counter 0: every tick is uvicorn's once-a-second one
            await asyncio.sleep(1.0)


class ApiListenError(Permanent):
    """The join API's address:port cannot be listened on."""


async def serve_api(voter: VoterDeps, registry: CollectorRegistry | None = None,
                    before_add: Callable[[str], Awaitable[bool]] | None = None) -> None:
    store, data, cfg = voter.store, voter.data, voter.cfg

    async def ready() -> str | None:
        try:
            await store.ready()
            return None
        except E.StoreError as e:
            return f"etcd not ready: {e}"

    join = JoinService(store, joiner_timeout=cfg.spec.reconciler.joiner_timeout, before_add=before_add)
    deps = ApiDeps(store=store, data=data, join=join, ready=ready, registry=registry or CollectorRegistry())
    config = uvicorn.Config(
        build_app(deps), host=cfg.api_address, port=cfg.api.port, log_level="warning", lifespan="off",
        ssl_certfile=str(data.api_crt), ssl_keyfile=str(data.api_key),
        ssl_context_factory=lambda _cfg, _default: server_ssl_context(data),
        timeout_keep_alive=5, http=PeerCertProtocol,
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
