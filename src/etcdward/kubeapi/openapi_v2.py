"""OpenAPI v2 for kubectl before 1.27, whose `explain` (and client-side validation) reads only
`/openapi/v2` and only as protobuf (gnostic's openapi.v2.Document). The schemas are the same as
the v3 document's (discovery.SCHEMAS), converted; newer clients use /openapi/v3.

Protobuf is written by hand for the few fields used (field numbers from gnostic's
OpenAPIv2.proto): no generated code and no schema compiler for one static document.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .discovery import SCHEMAS, VERSION

PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bytes(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _ref(ref: str) -> str:
    return "#/definitions/" + ref.rsplit("/", 1)[-1]


def _schema(s: dict[str, Any]) -> bytes:
    """openapi.v2.Schema: _ref 1, description 4, required 19, additional_properties 21,
    type 22, items 23, properties 25, vendor_extension 31."""
    if "allOf" in s and len(s["allOf"]) == 1 and "$ref" in s["allOf"][0]:
        s = {**s, "$ref": s["allOf"][0]["$ref"]}
    out = b""
    if "$ref" in s:
        out += _str(1, _ref(s["$ref"]))
    if s.get("description"):
        out += _str(4, s["description"])
    for name in s.get("required", ()):
        out += _str(19, name)
    if isinstance(s.get("additionalProperties"), dict):
        out += _bytes(21, _bytes(1, _schema(s["additionalProperties"])))
    if "type" in s and "$ref" not in s:
        out += _bytes(22, _str(1, s["type"]))
    if isinstance(s.get("items"), dict):
        out += _bytes(23, _bytes(1, _schema(s["items"])))
    if s.get("properties"):
        out += _bytes(25, b"".join(_bytes(1, _str(1, k) + _bytes(2, _schema(v))) for k, v in s["properties"].items()))
    for key, value in s.items():
        if key.startswith("x-"):  # NamedAny{name, Any{yaml}}
            out += _bytes(31, _str(1, key) + _bytes(2, _str(2, yaml.safe_dump(value))))
    return out


def document_protobuf() -> bytes:
    """openapi.v2.Document: swagger 1, info 2 (title 1, version 2), definitions 9."""
    definitions = b"".join(_bytes(1, _str(1, name) + _bytes(2, _schema(s))) for name, s in SCHEMAS.items())
    return _str(1, "2.0") + _bytes(2, _str(1, "etcdward") + _str(2, VERSION)) + _bytes(9, definitions)


def _json_schema(s: dict[str, Any]) -> dict[str, Any]:
    if "allOf" in s and len(s["allOf"]) == 1 and "$ref" in s["allOf"][0]:
        s = {k: v for k, v in s.items() if k != "allOf"} | {"$ref": s["allOf"][0]["$ref"]}
    out = {k: v for k, v in s.items() if k not in ("properties", "items", "additionalProperties", "default")}
    if "$ref" in out:
        out["$ref"] = _ref(out["$ref"])
    for key in ("items", "additionalProperties"):
        if isinstance(s.get(key), dict):
            out[key] = _json_schema(s[key])
    if s.get("properties"):
        out["properties"] = {k: _json_schema(v) for k, v in s["properties"].items()}
    return out


def document_json() -> bytes:
    return json.dumps({"swagger": "2.0", "info": {"title": "etcdward", "version": VERSION}, "paths": {},
                       "definitions": {name: _json_schema(s) for name, s in SCHEMAS.items()}}).encode()


PROTOBUF_DOCUMENT = document_protobuf()
JSON_DOCUMENT = document_json()
