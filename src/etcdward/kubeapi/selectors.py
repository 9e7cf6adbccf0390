"""`labelSelector` and `fieldSelector` of list and watch requests.

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by
commas. Field selectors: `metadata.name` with `=`, `==` or `!=` (the only field label this
resource supports, as kubectl's `delete --wait` and `get NAME -w` need).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..records import EtcdMember
from .status import bad_request

_SET_RE = re.compile(r"\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\)|(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*")

Test = Callable[[EtcdMember], bool]


def _split(expr: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in expr:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in (*parts, cur) if p.strip()]


def _label_test(term: str) -> Test:
    m = _SET_RE.fullmatch(term)
    if not m:
        raise bad_request(f"unable to parse requirement: labelSelector: {term.strip()!r} is not a valid selector")
    neg, key, set_op, values, op, value = m.groups()
    if neg and (set_op or op):
        raise bad_request(f"unable to parse requirement: labelSelector: {term.strip()!r}: '!' takes a key only")
    if set_op:
        wanted = {v.strip() for v in values.split(",") if v.strip()}
        if set_op == "in":
            return lambda r: dict(r.labels).get(key) in wanted
        return lambda r: dict(r.labels).get(key) not in wanted
    if op:
        if op == "!=":
            return lambda r: dict(r.labels).get(key) != value
        return lambda r: dict(r.labels).get(key) == value
    if neg:
        return lambda r: key not in dict(r.labels)
    return lambda r: key in dict(r.labels)


def _field_test(term: str) -> Test:
    m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*(\S*)\s*", term)
    if not m:
        raise bad_request(f"invalid field selector: {term.strip()!r}")
    field, op, value = m.groups()
    if field != "metadata.name":
        raise bad_request(f'field label not supported: {field} (only "metadata.name" is)')
    if op == "!=":
        return lambda r: r.name != value
    return lambda r: r.name == value


@dataclass(frozen=True)
class Selector:
    tests: tuple[Test, ...] = ()

    def __call__(self, rec: EtcdMember) -> bool:
        return all(t(rec) for t in self.tests)


def parse(label_selector: str | None, field_selector: str | None) -> Selector:
    tests = [_label_test(t) for t in _split(label_selector or "")]
    tests += [_field_test(t) for t in (field_selector or "").split(",") if t.strip()]
    return Selector(tuple(tests))
