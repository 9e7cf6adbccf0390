"""Discovery documents: what kubectl and client-go read before any verb.

    GET /version                          server version (a kubectl "dispatcher" picks its minor)
    GET /api                              APIVersions (no core resources are served)
    GET /apis                             APIGroupList, or APIGroupDiscoveryList (aggregated, v2
                                          or v2beta1) when the Accept header asks for it
    GET /apis/etcd.etcdward.io            APIGroup
    GET /apis/etcd.etcdward.io/v1beta1    APIResourceList (verbs, short names, status subresource)
    GET /openapi/v3[/apis/<group>/<ver>]  OpenAPI v3 (for `kubectl explain`)
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .status import GROUP, KIND, PLURAL, VERSION

GROUP_VERSION = f"{GROUP}/{VERSION}"
SINGULAR = "etcdmember"
SHORT_NAMES = ["em"]
VERBS = ["delete", "get", "list", "patch", "update", "watch"]  # no create: records come from etcd
STATUS_VERBS = ["get", "patch", "update"]
# kubectl "dispatchers" run the bundled kubectl whose minor matches this one.
KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0+etcdward", "gitCommit": "", "gitTreeState": "",
                "buildDate": "", "goVersion": "", "compiler": "", "platform": "linux/amd64"}

_AGGREGATED_RE = re.compile(r"g=apidiscovery\.k8s\.io;\s*v=(v2beta1|v2);\s*as=APIGroupDiscoveryList")


def aggregated_version(accept: str) -> str | None:
    """v2 or v2beta1 when the client asks for aggregated discovery (first match wins), else None."""
    for part in accept.split(","):
        m = _AGGREGATED_RE.search(part.replace(" ", ""))
        if m:
            return m.group(1)
        if part.split(";")[0].strip() in ("application/json", "*/*"):
            return None
    return None


def aggregated(version: str) -> dict[str, Any]:
    kind = {"group": GROUP, "version": VERSION, "kind": KIND}
    resource = {"resource": PLURAL, "responseKind": kind, "scope": "Cluster", "singularResource": SINGULAR,
                "shortNames": SHORT_NAMES, "verbs": VERBS,
                "subresources": [{"subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS}]}
    items = [{"metadata": {"name": GROUP},
              "versions": [{"version": VERSION, "resources": [resource], "freshness": "Current"}]}]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


API_VERSIONS = {"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": []}
_GV = {"groupVersion": GROUP_VERSION, "version": VERSION}
API_GROUP = {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [_GV], "preferredVersion": _GV}
API_GROUP_LIST = {"kind": "APIGroupList", "apiVersion": "v1",
                  "groups": [{k: v for k, v in API_GROUP.items() if k not in ("kind", "apiVersion")}]}
API_RESOURCE_LIST = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
    "resources": [
        {"name": PLURAL, "singularName": SINGULAR, "namespaced": False, "kind": KIND, "verbs": VERBS,
         "shortNames": SHORT_NAMES, "categories": []},
        {"name": f"{PLURAL}/status", "singularName": "", "namespaced": False, "kind": KIND, "verbs": STATUS_VERBS},
    ],
}

_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_SCHEMA = "io.etcdward.etcd.v1beta1.EtcdMember"


def _str(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


_CONDITION = {"type": "object", "description": "A condition of the member; only Joined is used.", "properties": {
    "type": _str("Joined"), "status": _str("True, False or Unknown"),
    "lastTransitionTime": _str("when status last changed (RFC 3339)"), "message": _str("human-readable detail")}}
SCHEMAS: dict[str, Any] = {
    _SCHEMA: {
        "type": "object",
        "description": "EtcdMember is the record of one etcd member of the control plane. Records are created by "
                       "the controllers from the etcd member list and reconciled back to it; set spec.leave to "
                       "ask the reconciler to remove the member (with the quorum guard).",
        "x-kubernetes-group-version-kind": [{"group": GROUP, "kind": KIND, "version": VERSION}],
        "properties": {
            "apiVersion": _str(f"APIVersion defines the versioned schema of this object: {GROUP_VERSION}"),
            "kind": _str(f"Kind is the type of this object: {KIND}"),
            "metadata": {"allOf": [{"$ref": f"#/components/schemas/{_META}"}], "default": {},
                         "description": "Standard object metadata (name = the etcd member name)."},
            "spec": {"type": "object", "description": "EtcdMemberSpec is what a user may ask of the member.",
                     "properties": {"leave": {"type": "boolean", "default": False,
                                              "description": "Leave asks the reconciler to remove this member "
                                                             "from the etcd cluster, with the quorum guard."}}},
            "status": {"type": "object", "description": "EtcdMemberStatus is written by the controllers only.",
                       "properties": {
                           "peerAddress": _str("the member's peer address (a host, not a URL)"),
                           "memberID": _str("the etcd member ID in lowercase hex"),
                           "reconcileStatus": _str("Success, Failed or empty"),
                           "message": _str("the last reconcile message"),
                           "conditions": {"type": "array", "items": _CONDITION,
                                          "description": "conditions of the member (Joined)"}}},
        },
    },
    _META: {
        "type": "object", "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": _str("Name is unique within the cluster: the etcd member name."),
            "uid": _str("UID is the unique identity of this record."),
            "resourceVersion": _str("The etcd mod revision of the record's key; writes compare it."),
            "creationTimestamp": _str("When the record was created (RFC 3339)."),
            "labels": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "Map of string keys and values to organize and select records."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"},
                            "description": "Unstructured key value map stored with the record."},
        },
    },
}
_GVK = {"group": GROUP, "kind": KIND, "version": VERSION}
# `kubectl explain` finds the kind through a GET operation's x-kubernetes-group-version-kind on
# /apis/<group>/<version>/<plural>[/{name}], then the schema carrying the same GVK.
_REF = {"schema": {"$ref": f"#/components/schemas/{_SCHEMA}"}}
_OK = {"200": {"description": "OK", "content": {"application/json": _REF}}}
# kubectl create/replace/apply first look for a fieldValidation parameter of the operation: with
# it they leave validation to the server (which answers create with 405 and ignores nothing
# silently) instead of downloading the OpenAPI v2 schema that is not served here.
_FIELD_VALIDATION = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}]


def _operations(*verbs: str) -> dict[str, Any]:
    return {verb: {"x-kubernetes-group-version-kind": _GVK, "responses": _OK,
                   **({} if verb in ("get", "delete") else {"parameters": _FIELD_VALIDATION})} for verb in verbs}


OPENAPI_V3_GV: dict[str, Any] = {
    "openapi": "3.0.0", "info": {"title": "etcdward", "version": VERSION},
    "paths": {f"/apis/{GROUP_VERSION}/{PLURAL}": _operations("get", "post"),
              f"/apis/{GROUP_VERSION}/{PLURAL}/{{name}}": _operations("get", "put", "patch", "delete")},
    "components": {"schemas": SCHEMAS},
}
_HASH = hashlib.sha512(json.dumps(OPENAPI_V3_GV, sort_keys=True).encode()).hexdigest()[:32].upper()
OPENAPI_V3_ROOT = {"paths": {f"apis/{GROUP_VERSION}": {
    "serverRelativeURL": f"/openapi/v3/apis/{GROUP_VERSION}?hash={_HASH}"}}}
