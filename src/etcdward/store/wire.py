"""etcd's v3 JSON API (grpc-gateway, on the client port): the request bodies and the answers,
for both clients of store/ (client.py's asyncio Store, gateway.py's blocking CLI reader).

The gateway speaks the gRPC messages as JSON with their proto field names: bytes in base64,
64-bit integers as strings, enums by name, fields at their default value left out. An error is
an HTTP status with `{"error": msg, "code": <gRPC code>, "message": msg}`; inside a streamed
answer it is one line `{"error": {"grpc_code": N, "message": msg, ...}}`.
"""

from __future__ import annotations

import binascii
import json

from . import errors as E
from .types import KV, Alarm, Member, Status, WatchEvent

TYPE_CHECKING = False  # typing costs the CLI's fast path (cli/fastpath.py) more than it prints
if TYPE_CHECKING:
    from typing import Any

ALARMS = {1: "NOSPACE", 2: "CORRUPT"}  # etcdserverpb.AlarmType, should an alarm come as a number

# gRPC status codes (the gateway's "code") that say "not now" rather than "never"
_CANCELLED, _NOT_FOUND, _DEADLINE, _PERMISSION, _UNAVAILABLE, _UNAUTHENTICATED = 1, 5, 4, 7, 14, 16


def b64(raw: bytes | str) -> str:
    return binascii.b2a_base64(raw.encode() if isinstance(raw, str) else raw, newline=False).decode()


def key_range(key: str, prefix: bool) -> dict[str, str]:
    """A RangeRequest's key fields: the key, or (prefix) every key under it."""
    start = key.encode()
    if not prefix:
        return {"key": b64(start)}
    stem = start.rstrip(b"\xff")  # etcd's prefix range end: the prefix's last byte below 0xff, plus one
    end = stem[:-1] + bytes([stem[-1] + 1]) if stem else b"\x00"  # (every key from the start on)
    return {"key": b64(start or b"\x00"), "range_end": b64(end)}


def error(op: str, status: int, data: Any) -> E.StoreError:
    """The store error for an answer that is one: HTTP status and the gateway's JSON error."""
    err = data.get("error") if isinstance(data, dict) else None
    code: Any = None
    if isinstance(err, dict):  # an error line inside a stream
        msg, code = str(err.get("message") or err), err.get("grpc_code", err.get("code"))
    else:
        msg = str(err or (data.get("message") if isinstance(data, dict) else "") or f"HTTP {status}")
        code = data.get("code") if isinstance(data, dict) else None
    kind = E.classify(msg)
    if kind is None:
        if code in (_UNAVAILABLE, _DEADLINE, _CANCELLED) or (code is None and status >= 500):
            kind = E.Unavailable
        elif code in (_PERMISSION, _UNAUTHENTICATED):
            kind = E.PermissionDenied
        elif code == _NOT_FOUND:
            kind = E.MemberNotFound
        else:
            kind = E.Other
    if kind is E.Unavailable:
        kind = E.Refused  # etcd itself answered
    return kind(f"{op}: {msg}")


def answer(op: str, status: int, raw: bytes) -> dict[str, Any]:
    """The JSON of a unary answer, or its error raised."""
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise E.Other(f"{op}: etcd answered HTTP {status} with no JSON") from None
    if status != 200 or "error" in data:
        raise error(op, status, data)
    return data  # type: ignore[no-any-return]


def member(m: dict[str, Any]) -> Member:
    return Member(int(m.get("ID", 0)), m.get("name", ""), tuple(m.get("peerURLs") or ()),
                  tuple(m.get("clientURLs") or ()), bool(m.get("isLearner", False)))


def members(r: dict[str, Any]) -> list[Member]:
    return [member(m) for m in r.get("members") or ()]


def kv(d: dict[str, Any]) -> KV:
    return KV(binascii.a2b_base64(d.get("key", "")).decode(), binascii.a2b_base64(d.get("value", "")),
              int(d.get("create_revision", 0)), int(d.get("mod_revision", 0)), int(d.get("lease", 0)))


def range_answer(r: dict[str, Any]) -> tuple[list[KV], int]:
    return [kv(d) for d in r.get("kvs") or ()], revision(r)


def revision(r: dict[str, Any]) -> int:
    return int((r.get("header") or {}).get("revision", 0))


def txn_answer(data: dict[str, Any], reads: int) -> list[tuple[list[KV], int]]:
    answers = [range_answer(r.get("response_range") or {}) for r in data.get("responses") or ()]
    if len(answers) != reads:
        raise E.Other(f"txn: etcd answered {len(answers)} of {reads} reads")
    return answers


def status(r: dict[str, Any]) -> Status:
    h = r.get("header") or {}
    return Status(
        member_id=int(h.get("member_id", 0)), cluster_id=int(h.get("cluster_id", 0)), leader_id=int(r.get("leader", 0)),
        raft_term=int(r.get("raftTerm", 0)), raft_index=int(r.get("raftIndex", 0)),
        is_learner=bool(r.get("isLearner", False)), version=str(r.get("version", "")),
        db_size=int(r.get("dbSize", 0)), errors=tuple(r.get("errors") or ()),
        raft_applied_index=int(r.get("raftAppliedIndex", 0)), db_size_in_use=int(r.get("dbSizeInUse", 0)),
        db_size_quota=int(r.get("dbSizeQuota", 0) or 0), revision=int(h.get("revision", 0)))


def alarms(r: dict[str, Any]) -> list[Alarm]:
    out = []
    for a in r.get("alarms") or ():
        kind = a.get("alarm", "NONE")
        out.append(Alarm(int(a.get("memberID", 0)), ALARMS.get(kind, str(kind)) if isinstance(kind, int) else str(kind)))
    return out


def watch_event(ev: dict[str, Any], with_prev: bool) -> WatchEvent:
    d = ev.get("kv") or {}
    prev = ev.get("prev_kv")
    return WatchEvent("delete" if ev.get("type") in ("DELETE", 1) else "put",
                      binascii.a2b_base64(d.get("key", "")).decode(), binascii.a2b_base64(d.get("value", "")),
                      int(d.get("mod_revision", 0)), int(d.get("create_revision", 0)),
                      binascii.a2b_base64(prev.get("value", "")) if with_prev and prev is not None else None)


def blob(result: dict[str, Any]) -> bytes:
    """The bytes of one snapshot answer."""
    return binascii.a2b_base64(result.get("blob", ""))
