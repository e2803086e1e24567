"""Frozen dataclasses with slots, built for less on hot paths.

A frozen dataclass's ``__init__`` sets every field with ``object.__setattr__(self, name,
value)`` (its own ``__setattr__`` refuses assignment); from Python that goes through a wrapper
created per call and a walk of the class's bases, ~1,300 instructions a field on CPython 3.11
(callgrind): ~25,000 for stats' 17-field ``Call``, against ~3,600 for the same class unfrozen
(issue 15, seventh round). ``builder(cls)`` returns a function that builds the same object as
``cls(...)`` does: an instance of an unfrozen twin with the same slots, whose class is then set
to ``cls`` (CPython allows it between classes of the same layout). What comes out is a ``cls``
like any other (equality, hash, repr, pickling, and assignment refused); the class itself is
not changed, so ``cls(...)``, ``copy`` and ``pickle`` work as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def builder(cls: type[T]) -> Callable[..., T]:
    """A function taking what ``cls(...)`` takes and returning what it returns, ~4 times
    cheaper. ``cls``: a frozen dataclass with slots, no base but ``object``, no
    ``__post_init__``, every field set by ``__init__`` and none with a default."""
    params = getattr(cls, "__dataclass_params__", None)
    if (
        params is None
        or not params.frozen
        or "__slots__" not in cls.__dict__
        or cls.__bases__ != (object,)
        or hasattr(cls, "__post_init__")
    ):
        raise TypeError(f"{cls.__name__} is not a frozen slots dataclass builder() can build")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    for f in fields:
        missing = dataclasses.MISSING
        if not f.init or f.default is not missing or f.default_factory is not missing:
            raise TypeError(f"{cls.__name__}.{f.name}: builder() needs fields without defaults")
    draft: Any = dataclasses.make_dataclass(
        f"{cls.__name__}Draft",
        [(f.name, f.type) for f in fields],
        slots=True,
        eq=False,
        repr=False,
    )
    if draft.__slots__ != cls.__slots__:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: the twin's slots differ")

    def build(*args: Any, **kwargs: Any) -> T:
        obj = draft(*args, **kwargs)
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]

    build.__doc__ = f"``{cls.__name__}(...)`` (``cdrkit.frozen.builder``)."
    return build
