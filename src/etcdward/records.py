"""EtcdMember records: the k0s-shaped objects under /etcdward/etcdmembers/<name>.

    {"apiVersion": "etcd.etcdward.io/v1beta1", "kind": "EtcdMember",
     "metadata": {"name", "uid", "creationTimestamp", "resourceVersion", "labels", "annotations"},
     "spec": {"leave": false},
     "status": {"peerAddress", "memberID", "reconcileStatus", "message",
                "conditions": [{"type": "Joined", "status", "lastTransitionTime", "message"}]}}

`resourceVersion` is the key's etcd mod revision: it is filled in on read and never stored.
`labels` and `annotations` (string maps, written by users through the kube API) are shown only
when not empty, so records without them keep their original shape.
Every write is a compare-and-swap on it (`create` = key absent, `update`/`delete` = mod
revision unchanged); a lost compare returns False and the caller re-reads.

The dataclass and its (de)serialisation are pure (the reconcile rules use them); the async
helpers at the bottom take a `Store`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from .addresses import is_member_name
from .errors import Permanent, Temporary
from .frozen import field, frozen, replace
from .keys import ETCDMEMBERS
from .store import KV, Member

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints

if TYPE_CHECKING:  # the store client pulls in asyncio and ssl; `etcdward get` reads through store/gateway.py
    from typing import Any

    from .store import Store


API_VERSION = "etcd.etcdward.io/v1beta1"
KIND = "EtcdMember"
LIST_KIND = "EtcdMemberList"
JOINED = "Joined"
CONDITION_STATUSES = ("True", "False", "Unknown")
RECONCILE_STATUSES = ("Success", "Failed", "")

# Messages other tools and tests look for (k0s wording where k0s has one).
MSG_JOINED = "Member joined"
MSG_NO_SUCH_MEMBER = "No such member ID"
MSG_REMOVED = "Member removed from cluster"


class RecordError(Permanent, ValueError):
    """A record that does not have the EtcdMember shape; the message names the field."""


def key(name: str) -> str:
    return ETCDMEMBERS + name


def timestamp(t: float | None = None) -> str:
    when = dt.datetime.fromtimestamp(t, dt.timezone.utc) if t is not None else dt.datetime.now(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def peer_host(peer_url: str) -> str:
    """The bare address of a peer URL (k0s status.peerAddress is not a URL)."""
    from urllib.parse import urlsplit  # here: `etcdward get etcdmembers` (fast path) never needs it

    try:
        return urlsplit(peer_url).hostname or ""
    except ValueError:
        return ""


@frozen
class Condition:
    type: str = JOINED
    status: str = "Unknown"
    last_transition_time: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "status": self.status, "lastTransitionTime": self.last_transition_time,
                "message": self.message}


@frozen
class EtcdMember:
    name: str
    uid: str = ""
    creation_timestamp: str = ""
    leave: bool = False
    peer_address: str = ""
    member_id: str = ""  # lowercase hex, "" if unknown
    reconcile_status: str = ""
    message: str = ""
    conditions: tuple[Condition, ...] = ()
    resource_version: int = 0  # etcd mod revision of the key; 0 = not stored
    # sorted (key, value) pairs: hashable like the rest of the record
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    create_revision: int = field(default=0, compare=False)

    # -- views -----------------------------------------------------------------------------
    @property
    def joined(self) -> str:
        for c in self.conditions:
            if c.type == JOINED:
                return c.status
        return "Unknown"

    @property
    def member_id_int(self) -> int | None:
        try:
            return int(self.member_id, 16) if self.member_id else None
        except ValueError:
            return None

    # -- changes (all return a new object) ------------------------------------------------
    def with_joined(self, status: str, message: str, now: float | None = None) -> EtcdMember:
        """Set the Joined condition; lastTransitionTime changes only when the status flips."""
        if status not in CONDITION_STATUSES:
            raise RecordError(f"status.conditions[Joined].status: {status!r} is not one of {CONDITION_STATUSES}")
        old = next((c for c in self.conditions if c.type == JOINED), None)
        since = old.last_transition_time if old is not None and old.status == status else timestamp(now)
        cond = Condition(JOINED, status, since, message)
        rest = tuple(c for c in self.conditions if c.type != JOINED)
        return replace(self, conditions=(cond, *rest))

    def with_status(self, **kw: Any) -> EtcdMember:
        return replace(self, **kw)

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self, with_version: bool = True) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "uid": self.uid, "creationTimestamp": self.creation_timestamp}
        if with_version:
            meta["resourceVersion"] = str(self.resource_version)
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        return {
            "apiVersion": API_VERSION, "kind": KIND, "metadata": meta,
            "spec": {"leave": self.leave},
            "status": {
                "peerAddress": self.peer_address, "memberID": self.member_id,
                "reconcileStatus": self.reconcile_status, "message": self.message,
                "conditions": [c.to_dict() for c in self.conditions],
            },
        }

    def to_json(self) -> str:
        """What is stored: everything but resourceVersion (that is the key's mod revision)."""
        return json.dumps(self.to_dict(with_version=False), separators=(",", ":"), sort_keys=True)


def new(name: str, peer_address: str, member_id: str, *, joined: str = "True", message: str = MSG_JOINED,
        now: float | None = None) -> EtcdMember:
    if not is_member_name(name):
        raise RecordError(f"metadata.name: {name!r} is not a lowercase RFC 1123 name")
    import uuid  # here: importing it costs the read-only CLI commands more than they print

    rec = EtcdMember(name=name, uid=str(uuid.uuid4()), creation_timestamp=timestamp(now), peer_address=peer_address,
                     member_id=member_id.lower())
    return rec.with_joined(joined, message, now)


def for_member(m: Member, now: float | None = None) -> EtcdMember:
    """A fresh record for an etcd member (the reconciler's rule 1)."""
    if m.is_learner:
        return new(m.name, peer_host(m.peer_url), m.hex_id, joined="Unknown", message="Learner, not promoted yet",
                   now=now)
    return new(m.name, peer_host(m.peer_url), m.hex_id, now=now)


def _field(d: Any, path: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict):
            raise RecordError(f"{path}: expected an object at {part!r}")
        if part not in cur:
            if required:
                raise RecordError(f"{path}: missing")
            return default
        cur = cur[part]
    if cur is None and not required:
        return default
    if not isinstance(cur, kind) or (kind is str and isinstance(cur, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RecordError(f"{path}: expected {names}, got {type(cur).__name__} {cur!r}")
    return cur


def string_map(pairs: Any, path: str) -> tuple[tuple[str, str], ...]:
    """A {str: str} object as sorted pairs (labels, annotations); RecordError names the field."""
    if pairs is None:
        return ()
    if not isinstance(pairs, dict):
        raise RecordError(f"{path}: expected an object of strings, got {type(pairs).__name__}")
    for k, v in pairs.items():
        if not isinstance(v, str):
            raise RecordError(f"{path}.{k}: expected a string, got {type(v).__name__} {v!r}")
    return tuple(sorted(pairs.items()))


def from_dict(d: Any, *, name: str | None = None, mod_revision: int = 0, create_revision: int = 0) -> EtcdMember:
    """Parse and validate an EtcdMember object. `name` (from the key) must match metadata.name."""
    if not isinstance(d, dict):
        raise RecordError(f"expected a JSON object, got {type(d).__name__}")
    if d.get("apiVersion") != API_VERSION:
        raise RecordError(f"apiVersion: expected {API_VERSION!r}, got {d.get('apiVersion')!r}")
    if d.get("kind") != KIND:
        raise RecordError(f"kind: expected {KIND!r}, got {d.get('kind')!r}")
    meta_name = _field(d, "metadata.name", str, required=True)
    if not is_member_name(meta_name):
        raise RecordError(f"metadata.name: {meta_name!r} is not a lowercase RFC 1123 name")
    if name is not None and meta_name != name:
        raise RecordError(f"metadata.name: {meta_name!r} does not match the key's name {name!r}")
    member_id = _field(d, "status.memberID", str, "")
    if member_id:
        try:
            int(member_id, 16)
        except ValueError:
            raise RecordError(f"status.memberID: {member_id!r} is not a hex member ID") from None
    rs = _field(d, "status.reconcileStatus", str, "")
    if rs not in RECONCILE_STATUSES:
        raise RecordError(f"status.reconcileStatus: {rs!r} is not one of {RECONCILE_STATUSES}")
    conds = []
    for i, c in enumerate(_field(d, "status.conditions", list, [])):
        if not isinstance(c, dict):
            raise RecordError(f"status.conditions[{i}]: expected an object")
        st = c.get("status", "Unknown")
        if st not in CONDITION_STATUSES:
            raise RecordError(f"status.conditions[{i}].status: {st!r} is not one of {CONDITION_STATUSES}")
        ctype = c.get("type")
        if ctype != JOINED:
            raise RecordError(f"status.conditions[{i}].type: {ctype!r} is not {JOINED!r}")
        ltt, msg = c.get("lastTransitionTime", ""), c.get("message", "")
        if not isinstance(ltt, str) or not isinstance(msg, str):
            raise RecordError(f"status.conditions[{i}]: lastTransitionTime and message must be strings")
        conds.append(Condition(ctype, st, ltt, msg))
    return EtcdMember(
        name=meta_name, uid=_field(d, "metadata.uid", str, ""),
        creation_timestamp=_field(d, "metadata.creationTimestamp", str, ""),
        leave=_field(d, "spec.leave", bool, False),
        peer_address=_field(d, "status.peerAddress", str, ""), member_id=member_id.lower(),
        reconcile_status=rs, message=_field(d, "status.message", str, ""), conditions=tuple(conds),
        resource_version=mod_revision, create_revision=create_revision,
        labels=string_map(_field(d, "metadata.labels", dict), "metadata.labels"),
        annotations=string_map(_field(d, "metadata.annotations", dict), "metadata.annotations"),
    )


def parse(raw: bytes | str, *, name: str | None = None, mod_revision: int = 0, create_revision: int = 0) -> EtcdMember:
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise RecordError(f"not valid JSON: {e}") from None
    return from_dict(d, name=name, mod_revision=mod_revision, create_revision=create_revision)


# -- I/O (compare-and-swap on the mod revision) ----------------------------------------------

@frozen
class Listing:
    records: tuple[EtcdMember, ...]
    invalid: tuple[tuple[str, str], ...]  # (key, why) of keys that are not EtcdMember objects
    revision: int


async def list_records(store: Store) -> Listing:
    return listing(*await store.get_prefix(ETCDMEMBERS))


def listing(kvs: list[KV], rev: int) -> Listing:
    """The records (and the keys that are not valid records) among kvs, a read of ETCDMEMBERS at
    revision rev."""
    recs, bad = [], []
    for kv in kvs:
        name = kv.key.removeprefix(ETCDMEMBERS)
        try:
            recs.append(parse(kv.value, name=name, mod_revision=kv.mod_revision, create_revision=kv.create_revision))
        except RecordError as e:
            bad.append((kv.key, str(e)))
    return Listing(tuple(recs), tuple(bad), rev)


async def get(store: Store, name: str) -> EtcdMember | None:
    kv = await store.get(key(name))
    if kv is None:
        return None
    return parse(kv.value, name=name, mod_revision=kv.mod_revision, create_revision=kv.create_revision)


async def create(store: Store, rec: EtcdMember) -> bool:
    return await store.create(key(rec.name), rec.to_json())


async def update(store: Store, rec: EtcdMember) -> bool:
    """Write rec if its key still has rec.resource_version as mod revision."""
    if not rec.resource_version:
        raise ValueError("update needs the resource_version the record was read at")
    return await store.update(key(rec.name), rec.to_json(), rec.resource_version)


async def delete(store: Store, rec: EtcdMember) -> bool:
    return await store.delete_if(key(rec.name), rec.resource_version)


class RecordConflict(Temporary):
    """Every compare-and-swap on a record lost: somebody else keeps writing it; try later."""


class NotFound(Permanent, LookupError):
    pass


async def modify(store: Store, name: str, change: Callable[[EtcdMember], EtcdMember | None],
                 attempts: int = 10) -> EtcdMember:
    """Read-modify-write with CAS, re-reading after a lost compare. `change` returns the new
    record, or None for "nothing to change". Returns the record as stored."""
    for _ in range(attempts):
        cur = await get(store, name)
        if cur is None:
            raise NotFound(name)
        nxt = change(cur)
        if nxt is None or nxt == cur:
            return cur
        if await update(store, nxt):
            return (await get(store, name)) or nxt
    raise RecordConflict(f"record {name} kept changing under us ({attempts} compare-and-swap attempts lost)")


async def upsert_self(store: Store, name: str, peer_address: str, member_id: str, live_ids: set[int],
                      now: float | None = None, attempts: int = 10) -> str:
    """A controller's own record, written when it starts. Never clears spec.leave of its own
    member (k0s #8141); a record left behind by a former member under this name (its member
    ID is no longer in etcd) is re-bound to this member with leave=false, since that leave
    request was about the departed member. Returns what was done."""
    for _ in range(attempts):
        cur = await get(store, name)
        if cur is None:
            if await create(store, new(name, peer_address, member_id, now=now)):
                return "created"
            continue
        if cur.member_id == member_id:
            nxt = cur.with_status(peer_address=peer_address).with_joined("True", MSG_JOINED, now)
            if cur.joined != "True" and not cur.leave:
                nxt = nxt.with_status(reconcile_status="", message="")
            what = "up to date" if nxt == cur else "updated"
        else:
            old = cur.member_id_int
            if old is not None and old in live_ids:
                return (f"conflict: record {name} belongs to live member id {cur.member_id}; not touching it "
                        "(two members with one name?)")
            nxt = cur.with_status(member_id=member_id, peer_address=peer_address, leave=False, reconcile_status="",
                                  message="").with_joined("True", MSG_JOINED, now)
            what = f"re-bound from departed member id {cur.member_id or '(none)'}"
        if nxt == cur or await update(store, nxt):
            return what
    raise RecordConflict(f"record {name} kept changing under us ({attempts} compare-and-swap attempts lost)")
