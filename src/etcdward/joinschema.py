"""The join API's OpenAPI document (GET /openapi.json): what a joiner sends and gets back, kept
apart from the handlers in api.py; the hypothesis fuzz test (tests/test_join_api.py) builds its
requests from it."""

from __future__ import annotations

from typing import Any

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
                                           "until their etcd is ready: 200 while it exists, 409 once it is gone"},
                           {"name": "X-Etcdward-Learner-Applied", "in": "header", "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"},
                            "description": "with X-Etcdward-Learner-ID: the applied index of the joiner's etcd "
                                           "(its catch-up progress, shown by `etcdward status`)"}],
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
