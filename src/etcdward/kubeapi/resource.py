"""The one implementation of the EtcdMember verbs, used by the kube API (routes.py) and by the
CLI (`etcdward get|patch|delete etcdmember`): list, get, delete, patch, update.

Every write is the compare-and-swap on the key's mod revision that the controllers use
(records.update / records.delete), so the reconciler's rules apply to what kubectl does.
Only `spec.leave`, `metadata.labels` and `metadata.annotations` are writable here; `status`
and the rest of `metadata` in a request are ignored, as for a custom resource with a status
subresource. Errors are KubeErrors (Status objects); bad input changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import records
from ..frozen import replace
from ..records import EtcdMember, RecordError
from ..store import errors as E
from . import patch as P
from .selectors import Selector
from .status import STALE, KubeError, bad_request, conflict, invalid, not_found, unavailable, \
    unsupported_media_type

if TYPE_CHECKING:  # the store client pulls in asyncio and ssl; `etcdward get` reads through store/gateway.py
    from ..store import Store

ATTEMPTS = 10  # compare-and-swap attempts of a write without a resourceVersion precondition
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}")
_LABEL_VALUE_RE = re.compile(rf"({_NAME})?")
WRITABLE = ("spec.leave", "metadata.labels", "metadata.annotations")


async def _store_op(op: Callable[[], Any]) -> Any:
    try:
        return await op()
    except E.StoreError as e:
        raise unavailable(f"etcd is not available: {e}") from None


def list_object(recs: tuple[EtcdMember, ...], revision: int | None = None) -> dict[str, Any]:
    """An EtcdMemberList as the kube API and `get -o json|yaml` print it."""
    out: dict[str, Any] = {"apiVersion": records.API_VERSION, "kind": records.LIST_KIND,
                           "items": [r.to_dict() for r in recs]}
    if revision is not None:
        out["metadata"] = {"resourceVersion": str(revision)}
    return out


async def list_members(store: Store, selector: Selector = Selector()) -> records.Listing:
    listing: records.Listing = await _store_op(lambda: records.list_records(store))
    chosen = tuple(sorted((r for r in listing.records if selector(r)), key=lambda r: r.name))
    return records.Listing(chosen, listing.invalid, listing.revision)


async def get_member(store: Store, name: str) -> EtcdMember:
    try:
        rec = await _store_op(lambda: records.get(store, name))
    except RecordError as e:
        raise KubeError(500, "InternalError", f"record {name} is not a valid EtcdMember ({e}); delete the key "
                                              f"{records.key(name)} by hand", name=name) from None
    if rec is None:
        raise not_found(name)
    return rec


def _map(obj: dict[str, Any], path: str, name: str, value_re: re.Pattern[str] | None) -> tuple[tuple[str, str], ...]:
    try:
        pairs = records.string_map(obj.get("metadata", {}).get(path.split(".")[1]), path)
    except RecordError as e:
        raise invalid(name, path, str(e).split(": ", 1)[-1]) from None
    for k, v in pairs:
        if not _KEY_RE.fullmatch(k) or len(k) > 316:
            raise invalid(name, f"{path}", "a key must be a qualified name ([prefix/]name, alphanumerics, "
                                           "'-', '_', '.')", k)
        if value_re is not None and not value_re.fullmatch(v):
            raise invalid(name, f"{path}.{k}", "a label value is at most 63 alphanumerics, '-', '_' or '.', "
                                               "starting and ending with an alphanumeric", v)
    return pairs


def user_change(cur: EtcdMember, obj: Any) -> EtcdMember:
    """cur with the writable fields of obj (a whole object a user sent or patched); KubeError
    naming the field for anything a user may not write in that way."""
    name = cur.name
    if not isinstance(obj, dict):
        raise bad_request("the body must be an EtcdMember object")
    if obj.get("apiVersion", records.API_VERSION) != records.API_VERSION:
        raise invalid(name, "apiVersion", f"must be {records.API_VERSION}", obj.get("apiVersion"))
    if obj.get("kind", records.KIND) != records.KIND:
        raise invalid(name, "kind", f"must be {records.KIND}", obj.get("kind"))
    meta = obj.get("metadata", {})
    if not isinstance(meta, dict):
        raise invalid(name, "metadata", "must be an object")
    if meta.get("name", name) != name:
        raise invalid(name, "metadata.name", "field is immutable", meta.get("name"))
    spec = obj.get("spec", {})
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise invalid(name, "spec", "must be an object", spec)
    for extra in sorted(set(spec) - {"leave"}):
        raise invalid(name, f"spec.{extra}", 'field not declared in schema (only "spec.leave" is)')
    leave = spec.get("leave", False)
    if not isinstance(leave, bool):
        raise invalid(name, "spec.leave", "must be a boolean", leave)
    return replace(cur, leave=leave, labels=_map(obj, "metadata.labels", name, _LABEL_VALUE_RE),
                   annotations=_map(obj, "metadata.annotations", name, None))


def _stale_precondition(cur: EtcdMember, obj: Any) -> bool:
    """True if obj names a resourceVersion other than cur's (a patch or PUT precondition)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv not in (None, "") and str(rv) != str(cur.resource_version)


def patch_function(content_type: str, body: Any) -> Callable[[dict[str, Any]], Any]:
    kind = content_type.split(";")[0].strip().lower()
    if kind == P.MERGE:
        return lambda obj: P.merge_patch(obj, body)
    if kind == P.JSON_PATCH:
        return lambda obj: P.json_patch(obj, body)
    raise unsupported_media_type(kind, P.ACCEPTED)


async def _write(store: Store, cur: EtcdMember, nxt: EtcdMember) -> EtcdMember | None:
    """nxt stored with a CAS on cur's revision, as read back; None if the compare lost."""
    if nxt == cur:
        return cur
    if not await _store_op(lambda: records.update(store, nxt)):
        return None
    return await get_member(store, cur.name)


async def patch_member(store: Store, name: str, change: Callable[[dict[str, Any]], Any]) -> tuple[EtcdMember, bool]:
    """Apply change (a patch function) to the current object and store the writable result.
    Returns (record as stored, whether it changed). A patch that changes nothing returns the
    record unchanged, with the same resourceVersion (kubectl: "patched (no change)")."""
    for _ in range(ATTEMPTS):
        cur = await get_member(store, name)
        try:
            patched = change(cur.to_dict())
        except P.PatchError as e:
            raise KubeError(422, "Invalid", f"the patch could not be applied: {e}", name=name) from None
        if _stale_precondition(cur, patched):
            raise conflict(name, STALE)
        stored = await _write(store, cur, user_change(cur, patched))
        if stored is not None:
            return stored, stored is not cur
    raise conflict(name, f"the record kept changing ({ATTEMPTS} compare-and-swap attempts lost); try again")


async def replace_member(store: Store, name: str, obj: Any) -> EtcdMember:
    """PUT: optimistic concurrency on metadata.resourceVersion (required; stale -> 409)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or meta.get("name") != name:
        raise bad_request(f"the name of the object ({meta.get('name') if isinstance(meta, dict) else None}) does "
                          f"not match the name on the URL ({name})")
    if not meta.get("resourceVersion"):
        raise invalid(name, "metadata.resourceVersion", "must be specified for an update", 0)
    cur = await get_member(store, name)
    if _stale_precondition(cur, obj):
        raise conflict(name, STALE)
    stored = await _write(store, cur, user_change(cur, obj))
    if stored is None:
        raise conflict(name, STALE)
    return stored


async def delete_member(store: Store, name: str, preconditions: Any = None) -> EtcdMember:
    """Delete with a CAS on the revision read; returns the object as it was. Preconditions
    (DeleteOptions.preconditions: uid, resourceVersion) that do not hold -> 409."""
    pre = preconditions if isinstance(preconditions, dict) else {}
    for _ in range(ATTEMPTS):
        cur = await get_member(store, name)
        if pre.get("uid") and pre["uid"] != cur.uid:
            raise conflict(name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                                 f"{cur.uid}")
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != str(cur.resource_version):
            raise conflict(name, f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                                 f"ResourceVersion in object meta: {cur.resource_version}")
        if await _store_op(lambda: records.delete(store, cur)):
            return cur
    raise conflict(name, f"the record kept changing ({ATTEMPTS} compare-and-swap attempts lost); try again")
