"""HTTP handlers of the kube API, mounted into the API listener's Starlette app (api.py).

Every route authenticates the client certificate first (tlsauth.py): no certificate, another
CA's, an expired one, or a bearer token (join tokens are not credentials here) → 401 Status.
Objects are JSON, or a meta/v1 Table when the Accept header asks for one (kubectl get).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .. import records
from ..records import EtcdMember
from ..store import Store
from . import discovery as D
from . import openapi_v2 as V2
from . import resource, selectors, table, watch
from .status import GROUP, PLURAL, VERSION, KubeError, bad_request, forbidden, method_not_allowed
from .tlsauth import PEER_CERT, ClusterCA, authenticate

MAX_BODY = 256 * 1024
WATCH_DEFAULT = 3600.0  # seconds a watch stays open without timeoutSeconds (kube-apiserver: 30-60 min)
BASE = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
Handler = Callable[[Request, str], Awaitable[Response]]


def wants_table(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def _object(rec: EtcdMember | None, rv: str, as_table: bool) -> dict[str, Any]:
    if rec is None:  # a BOOKMARK carries only the revision
        if as_table:
            return {**table.kube_table([], rv), "rows": []}
        return {"apiVersion": records.API_VERSION, "kind": records.KIND, "metadata": {"resourceVersion": rv}}
    obj = rec.to_dict()
    return table.kube_table([(rec, obj)], rv) if as_table else obj


async def read_json(request: Request) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise KubeError(413, "RequestEntityTooLarge", f"the request body is larger than {MAX_BODY} bytes")
    try:
        return json.loads(body) if body.strip() else None
    except (ValueError, RecursionError) as e:
        raise bad_request(f"the body is not valid JSON: {e}") from None


def kube_routes(store: Store, ca: ClusterCA) -> list[BaseRoute]:
    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                user = authenticate(request.scope.get("state", {}).get(PEER_CERT), ca)
                return await handler(request, user)
            except KubeError as e:
                return JSONResponse(e.status(), e.code)
        return run

    def static(doc: dict[str, Any]) -> Handler:
        async def get(request: Request, user: str) -> Response:
            return JSONResponse(doc)
        return get

    async def apis(request: Request, user: str) -> Response:
        version = D.aggregated_version(request.headers.get("accept", ""))
        if version is None:
            return JSONResponse(D.API_GROUP_LIST)
        return JSONResponse(D.aggregated(version), headers={"Content-Type": D.aggregated_content_type(version)})

    async def collection(request: Request, user: str) -> Response:
        if request.method == "POST":
            raise method_not_allowed("EtcdMember records are created by the controllers from the etcd member "
                                     "list, not by users (see `etcdward etcd member-list`)")
        if request.method != "GET":
            raise method_not_allowed(f"{request.method} is not supported on {PLURAL}")
        q = request.query_params
        sel = selectors.parse(q.get("labelSelector"), q.get("fieldSelector"))
        as_table = wants_table(request)
        if q.get("watch") in ("true", "1"):
            return watch_response(q, sel, as_table)
        listing = await resource.list_members(store, sel)
        if as_table:
            return JSONResponse(table.kube_table([(r, r.to_dict()) for r in listing.records], str(listing.revision)))
        return JSONResponse(resource.list_object(listing.records, listing.revision))

    def watch_response(q: Any, sel: selectors.Selector, as_table: bool) -> Response:
        try:
            since = int(q.get("resourceVersion") or 0)
            duration = float(q.get("timeoutSeconds") or WATCH_DEFAULT)
        except ValueError:
            raise bad_request("resourceVersion and timeoutSeconds must be numbers") from None
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")

        async def lines() -> AsyncIterator[bytes]:
            events = watch.events(store, sel, since, bookmarks, max(0.0, duration))
            async with contextlib.aclosing(events):
                async for ev in events:
                    body = watch.event_body(ev, lambda rec, rv: _object(rec, rv, as_table))
                    yield json.dumps(body, separators=(",", ":")).encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/json")

    async def item(request: Request, user: str) -> Response:
        name, as_table = request.path_params["name"], wants_table(request)
        if request.method == "GET":
            rec = await resource.get_member(store, name)
            return JSONResponse(_object(rec, str(rec.resource_version), as_table))
        if request.method == "DELETE":
            options = await read_json(request)
            pre = options.get("preconditions") if isinstance(options, dict) else None
            return JSONResponse((await resource.delete_member(store, name, pre)).to_dict())
        if request.method == "PATCH":
            content_type = request.headers.get("content-type", "")
            resource.patch_function(content_type, None)  # 415 before the body is read
            change = resource.patch_function(content_type, await read_json(request))
            rec, _ = await resource.patch_member(store, name, change)
            return JSONResponse(rec.to_dict())
        if request.method == "PUT":
            return JSONResponse((await resource.replace_member(store, name, await read_json(request))).to_dict())
        raise method_not_allowed(f"{request.method} is not supported on {PLURAL}/{name}")

    async def status(request: Request, user: str) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            rec = await resource.get_member(store, name)
            return JSONResponse(_object(rec, str(rec.resource_version), wants_table(request)))
        verb = {"PATCH": "patch", "PUT": "update"}.get(request.method, request.method.lower())
        await resource.get_member(store, name)  # 404 before 403, as kube-apiserver answers
        raise forbidden(user, verb, f"{PLURAL}/status", name,
                        "the status subresource is written by the etcdward controllers only")

    async def openapi_v2(request: Request, user: str) -> Response:
        if "protobuf" in request.headers.get("accept", ""):
            # as kube-openapi answers: Go's mime parser (client-go) rejects the '@' of the accept type
            return Response(V2.PROTOBUF_DOCUMENT, media_type="application/octet-stream")
        return Response(V2.JSON_DOCUMENT, media_type="application/json")

    all_methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    gv = f"/apis/{GROUP}/{VERSION}"
    return [
        Route("/version", endpoint(static(D.KUBE_VERSION)), methods=["GET"]),
        Route("/api", endpoint(static(D.API_VERSIONS)), methods=["GET"]),
        Route("/apis", endpoint(apis), methods=["GET"]),
        Route(f"/apis/{GROUP}", endpoint(static(D.API_GROUP)), methods=["GET"]),
        Route(gv, endpoint(static(D.API_RESOURCE_LIST)), methods=["GET"]),
        Route("/openapi/v2", endpoint(openapi_v2), methods=["GET"]),
        Route("/openapi/v3", endpoint(static(D.OPENAPI_V3_ROOT)), methods=["GET"]),
        Route(f"/openapi/v3{gv}", endpoint(static(D.OPENAPI_V3_GV)), methods=["GET"]),
        Route(BASE, endpoint(collection), methods=all_methods),
        Route(BASE + "/{name}", endpoint(item), methods=all_methods),
        Route(BASE + "/{name}/status", endpoint(status), methods=all_methods),
    ]
