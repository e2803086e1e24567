"""``cdrkit.frozen.builder``: the object it builds is the one the class builds."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from cdr_billing.rating import CallFacts, Rated
from cdr_billing.tariff import Segment
from cdr_stats.call_fields import Call
from cdrkit.frozen import builder


@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: str | None


def test_built_objects_are_the_class_s_own() -> None:
    build = builder(Point)
    for args, kwargs in (((1, "a"), {}), ((2,), {"y": None}), ((), {"y": "b", "x": 3})):
        built, made = build(*args, **kwargs), Point(*args, **kwargs)
        assert type(built) is Point
        assert built == made
        assert hash(built) == hash(made)
        assert repr(built) == repr(made)
        assert dataclasses.astuple(built) == dataclasses.astuple(made)
        assert pickle.loads(pickle.dumps(built)) == made
        assert copy.copy(built) == made
        assert dataclasses.replace(built, x=9) == Point(9, made.y)
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.x = 5  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            del built.y  # type: ignore[misc]
    with pytest.raises(TypeError):
        build(1)  # what Point(1) refuses
    with pytest.raises(TypeError):
        build(1, "a", 2)


def test_the_services_classes_build_alike() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    for cls, args in (
        (CallFacts, ("c", "s", "fs", "1", "2", None, now, None, now, 1, 0, "answered")),
        (Rated, ("priced", 1, "BRL", "default", 1, now, now, 0, {"a": 1})),
        (Segment, ("standard", now, now)),
        (
            Call,
            ("c", 1.0, 0, True, 1, 2, None, 200, None, None, "k", None, None, None, None, None, {}),
        ),
    ):
        built = builder(cls)(*args)  # type: ignore[type-var]
        assert type(built) is cls
        assert built == cls(*args)
        assert repr(built) == repr(cls(*args))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(built, dataclasses.fields(built)[0].name, 1)


@dataclass(frozen=True, slots=True)
class _WithDefault:
    x: int = 0


@dataclass(slots=True)
class _NotFrozen:
    x: int


@dataclass(frozen=True)
class _NoSlots:
    x: int


@dataclass(frozen=True, slots=True)
class _PostInit:
    x: int

    def __post_init__(self) -> None:
        pass


@pytest.mark.parametrize("cls", [_WithDefault, _NotFrozen, _NoSlots, _PostInit, int])
def test_classes_it_cannot_build_alike_are_refused(cls: type) -> None:
    with pytest.raises(TypeError):
        builder(cls)
