"""Rule tests run once per format; every CDR any test maps is checked against the model's own
validation (``build._cdr`` builds it without pydantic's validation when it may)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from cdr_parser.freeswitch import build as build_module
from cdrmodel.errors import UnmappableRecord
from cdrmodel.record import CDR


@pytest.fixture(params=["xml", "json"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def same_cdr(fast: CDR, validated: CDR) -> None:
    """``fast`` is ``validated`` field by field: same values of the same types (a datetime with
    the same tzinfo object), same order, same set fields, same JSON."""
    assert list(fast.__dict__) == list(validated.__dict__) == list(CDR.model_fields)
    for name, want in validated.__dict__.items():
        got = fast.__dict__[name]
        assert type(got) is type(want), (name, got, want)
        assert got == want, (name, got, want)
        if isinstance(want, datetime):
            assert got.tzinfo is want.tzinfo, (name, got, want)
    assert fast.__pydantic_fields_set__ == validated.__pydantic_fields_set__
    assert fast.__pydantic_extra__ == validated.__pydantic_extra__
    assert fast.__pydantic_private__ == validated.__pydantic_private__
    assert fast.to_json() == validated.to_json()
    assert fast == validated


@pytest.fixture(autouse=True)
def cdr_as_the_model_validates_it(monkeypatch: pytest.MonkeyPatch) -> list[CDR]:
    """Every ``build._cdr`` of a test also made by ``CDR(**fields)``: both refuse the same
    fields with the same message, or both give the same record."""
    made: list[CDR] = []
    fast_path, validate = build_module._cdr, build_module._validated

    def checked(fields: dict[str, Any]) -> CDR:
        try:
            validated: CDR | None = validate(dict(fields))
            refusal = None
        except UnmappableRecord as exc:
            validated, refusal = None, str(exc)
        if refusal is not None:
            with pytest.raises(UnmappableRecord) as refused:
                fast_path(dict(fields))
            assert str(refused.value) == refusal
            raise refused.value
        fast = fast_path(dict(fields))
        assert validated is not None
        same_cdr(fast, validated)
        made.append(fast)
        return fast

    monkeypatch.setattr(build_module, "_cdr", checked)
    return made
