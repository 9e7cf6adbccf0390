"""`@frozen`: what `@dataclass(frozen=True)` makes of a class, without importing dataclasses.

dataclasses imports inspect (and with it ast, dis, tokenize), 10-30 ms, and compiles generated
methods for each class, up to 1 ms a class: the CLI's fast path (cli/fastpath.py) reaches some
twenty value classes, and together that cost more than the whole of `etcdctl member list`. This
gives a class the same behaviour from methods written once for every class (nothing compiled,
some microseconds a class):

- fields in annotation order; a default is a class attribute, or `field(default=...,
  default_factory=..., compare=...)`;
- `__init__` taking what dataclass's takes (positional or keyword, defaults), with the same
  TypeErrors;
- `__eq__` (same class only) and `__hash__` over the compared fields, dataclass's `__repr__`,
  `__match_args__`;
- frozen: assigning or deleting an attribute raises FrozenError (an AttributeError, as
  dataclasses.FrozenInstanceError is);
- `replace(obj, **changes)` for `dataclasses.replace`.

Not supported (no class here needs it): inheritance between such classes, ClassVar, InitVar,
__post_init__, order, slots, kw_only. dataclasses.fields/asdict/replace do not know these
classes: use this module's `replace`.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # typing costs the CLI's fast path more than it prints
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_: object):  # type checkers read it as a dataclass; at run time nothing
        return lambda f: f

_MISSING = object()
_FIELDS = "__frozen_fields__"


class FrozenError(AttributeError):
    """An assignment to a field of a frozen instance."""


class _Field:
    __slots__ = ("default", "default_factory", "compare")

    def __init__(self, default: Any, default_factory: Any, compare: bool) -> None:
        self.default, self.default_factory, self.compare = default, default_factory, compare


def field(*, default: Any = _MISSING, default_factory: Any = _MISSING, compare: bool = True) -> Any:
    """A field's default or default factory, and whether __eq__ and __hash__ look at it."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, compare)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[T]) -> type[T]:
    """The class, made what @dataclass(frozen=True) would make of it (see the module's doc)."""
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults: dict[str, Any] = {}
    factories: dict[str, Any] = {}
    compared = []
    for name in names:
        spec = cls.__dict__.get(name, _MISSING)
        if not isinstance(spec, _Field):
            spec = _Field(spec, _MISSING, True)
        if spec.compare:
            compared.append(name)
        if spec.default_factory is not _MISSING:
            factories[name] = spec.default_factory
            delattr(cls, name)  # as dataclass does: no class attribute for a factory field
        elif spec.default is not _MISSING:
            defaults[name] = spec.default
            setattr(cls, name, spec.default)
        elif defaults or factories:
            raise TypeError(f"non-default argument {name!r} follows default argument")
    key = _key(tuple(compared))

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(key(self))

    made = {"__init__": _init(cls.__qualname__, names, defaults, factories), "__eq__": __eq__, "__hash__": __hash__,
            "__repr__": _repr, "__setattr__": _refuse_set, "__delattr__": _refuse_delete, "__match_args__": names}
    for attr, value in made.items():
        if attr not in cls.__dict__:  # as dataclass does: a method the class defines itself stays
            if attr in ("__init__", "__eq__", "__hash__"):
                value.__qualname__ = f"{cls.__qualname__}.{attr}"
            setattr(cls, attr, value)
    setattr(cls, _FIELDS, names)
    return cls


def _key(compared: tuple[str, ...]) -> Any:
    """The tuple of compared fields of an instance (attrgetter is C: as fast as dataclass's own)."""
    if len(compared) > 1:
        return attrgetter(*compared)
    return lambda obj: tuple(getattr(obj, n) for n in compared)


def _init(qualname: str, names: tuple[str, ...], defaults: dict[str, Any], factories: dict[str, Any]) -> Any:
    """__init__ as dataclass generates it, written once for every class: generating and compiling
    it per class costs up to 0.7 ms a class. Same parameters, same TypeErrors."""
    count = len(names)
    required = count - len(defaults) - len(factories)
    known = frozenset(names)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if not kwargs and len(args) == count:
            self.__dict__.update(zip(names, args))
            return
        if len(args) > count:
            takes = f"from {required + 1} to {count + 1}" if required < count else f"{count + 1}"
            raise TypeError(f"{qualname}.__init__() takes {takes} positional arguments but {len(args) + 1} were given")
        values = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in known:
                raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument {name!r}")
            if name in values:
                raise TypeError(f"{qualname}.__init__() got multiple values for argument {name!r}")
            values[name] = value
        missing = []
        for name in names[len(args):]:
            if name in values:
                continue
            if name in defaults:
                values[name] = defaults[name]
            elif name in factories:
                values[name] = factories[name]()
            else:
                missing.append(name)
        if missing:
            listed = " and ".join(", ".join(repr(n) for n in missing).rsplit(", ", 1))
            raise TypeError(f"{qualname}.__init__() missing {len(missing)} required positional "
                            f"argument{'s' if len(missing) > 1 else ''}: {listed}")
        self.__dict__.update((n, values[n]) for n in names)

    return __init__


def _repr(self: Any) -> str:
    fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in getattr(self, _FIELDS))
    return f"{self.__class__.__qualname__}({fields})"


def _refuse_set(self: Any, name: str, value: Any) -> None:
    raise FrozenError(f"cannot assign to field {name!r}")


def _refuse_delete(self: Any, name: str) -> None:
    raise FrozenError(f"cannot delete field {name!r}")


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of a @frozen instance with some fields changed, as dataclasses.replace makes one
    (a dataclass instance goes to dataclasses.replace: one replace for both kinds)."""
    names = getattr(obj, _FIELDS, None)
    if names is None:
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    for name in names:
        if name not in changes:
            changes[name] = getattr(obj, name)
    return obj.__class__(**changes)
