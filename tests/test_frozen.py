"""@frozen behaves as @dataclass(frozen=True) does for what the value classes use: the same
construction (and TypeErrors), equality, hashing, repr, frozenness, replace, pickling."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from etcdward.frozen import FrozenError, field, frozen, replace


@frozen
class Made:
    a: int
    b: str
    c: int = field(default=0, compare=False)
    d: dict[str, int] = field(default_factory=dict)
    e: int = 5


@dataclasses.dataclass(frozen=True)
class Reference:
    a: int
    b: str
    c: int = dataclasses.field(default=0, compare=False)
    d: dict[str, int] = dataclasses.field(default_factory=dict)
    e: int = 5


@frozen
class One:
    v: int


def _both(build):  # type: ignore[no-untyped-def]
    """build(cls) for both classes: its outcome, with the class's name taken out."""
    out = []
    for cls in (Made, Reference):
        try:
            out.append(repr(build(cls)).replace(cls.__name__, "C"))
        except TypeError as e:
            out.append("TypeError: " + str(e).replace(cls.__name__, "C"))
    return out


@pytest.mark.parametrize("build", [
    lambda C: C(1, "x"), lambda C: C(1, "x", 3, {"k": 1}, 7), lambda C: C(b="y", a=2, e=9),
    lambda C: C(1), lambda C: C(), lambda C: C(1, "x", zz=1), lambda C: C(1, "x", a=1),
    lambda C: C(1, "x", 3, {}, 7, 8)])
def test_construction_and_repr_as_dataclass(build) -> None:  # type: ignore[no-untyped-def]
    made, reference = _both(build)
    assert made == reference


def test_equality_hash_and_frozenness() -> None:
    x = Made(1, "x", c=3)
    assert x == Made(1, "x") and x != Made(2, "x") and x != Reference(1, "x")  # c is not compared
    assert hash(Made(1, "y", c=1, d=())) == hash(Made(1, "y", d=()))  # type: ignore[arg-type]
    assert Made(1, "x").d is not Made(1, "x").d and "d" not in Made.__dict__ and Made.e == 5
    assert One(1) == One(1) and One(1) != One(2) and hash(One(3)) == hash(One(3))
    with pytest.raises(FrozenError, match="cannot assign to field 'a'"):
        x.a = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del x.b  # type: ignore[misc]
    assert Made.__match_args__ == ("a", "b", "c", "d", "e")


def test_replace_pickle_copy() -> None:
    x = Made(1, "x", d={"k": 1})
    assert replace(x, e=7) == Made(1, "x", d={"k": 1}, e=7) and x.e == 5
    assert replace(Reference(1, "x"), e=7) == Reference(1, "x", e=7)  # a dataclass: passed on
    with pytest.raises(TypeError):
        replace(x, nosuch=1)
    assert pickle.loads(pickle.dumps(x)) == x and copy.deepcopy(x) == x and copy.copy(x) == x
