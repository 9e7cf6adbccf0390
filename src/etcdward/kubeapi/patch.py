"""The two patch formats custom resources accept, pure functions on JSON values:

    application/merge-patch+json   RFC 7386 (what `kubectl patch --type merge` sends)
    application/json-patch+json    RFC 6902 (`kubectl patch --type json`)

A malformed patch raises PatchError naming the operation or path; the caller answers it.
Strategic merge patch is not supported, as for custom resources (the caller answers 415).
"""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
ACCEPTED = [JSON_PATCH, MERGE, "application/apply-patch+yaml"]  # what kube-apiserver lists for CRs


class PatchError(ValueError):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"path {path!r} is not a JSON pointer (it starts with '/')")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        cur = _child(cur, p, path)
    return cur, parts[-1]


def _child(cur: Any, p: str, path: str) -> Any:
    if isinstance(cur, dict) and p in cur:
        return cur[p]
    if isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
        return cur[int(p)]
    raise PatchError(f"path {path!r} does not exist")


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for p in _pointer(path):
        cur = _child(cur, p, path)
    return cur


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, parts, path)
    value = _child(parent, last, path)
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
    return value


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"path {path!r}: index out of range")
    else:
        raise PatchError(f"path {path!r}: parent is not an object or array")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test, applied in order to a copy of doc."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is an array of operations")
    doc = copy.deepcopy(doc)
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or "path" not in op:
            raise PatchError(f"operation {i}: an object with 'op' and 'path' is required")
        kind, path = op.get("op"), op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"operation {i} ({kind} {path}): 'value' is required")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            value = _get(doc, op.get("from", ""))
            if kind == "move":
                _remove(doc, op["from"])
            doc = _add(doc, path, copy.deepcopy(value))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"operation {i}: test of {path} failed")
        else:
            raise PatchError(f"operation {i}: unknown op {kind!r}")
    return doc
