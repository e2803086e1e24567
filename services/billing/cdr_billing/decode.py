"""A ``cdr.normalized`` message → billing's ``CallFacts``: ``facts(CDR.from_json(value))`` for
less (issue 15, ninth round).

``CDR``'s four times are ``UtcDatetime``: pydantic-core parses each into a datetime with its own
``TzInfo`` and the model's ``_require_utc`` converts it with ``astimezone(UTC)``, a call back
into pydantic-core for the offset: ~16,000 instructions of the ~74,000 a CDR. ``_FAST`` is the
model with every field as ``CDR`` has it (the same ``FieldInfo`` objects, the same config) but
those four times: they are JSON strings of the one form the parser writes (``…T…Z``, or
``+00:00``, a fraction of one to six digits) that ``datetime.fromisoformat`` then reads, to the
same value ``CDR`` gives (the same fields, ``datetime.UTC``, fold 0).

What ``_FAST`` or ``fromisoformat`` refuses goes to ``CDR.from_json`` itself: its value, or its
``ValidationError`` (the dead letter's reason) exactly. ``_FAST`` never accepts what ``CDR``
refuses: every field but the times is ``CDR``'s own, and a time of that form is one pydantic
reads alike whenever ``fromisoformat`` reads it (``tests/billing/test_decode.py`` holds the
facts and the verdicts to ``CDR``'s over random and mutated messages).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, create_model

from cdr_billing.rating import CallFacts, make_facts
from cdrmodel import CDR
from cdrmodel.record import UtcDatetime

# A time as the parser writes it (pydantic's JSON of an aware UTC datetime): ASCII digits only
# (the rust regex's ``\d`` is any Unicode digit), hours, minutes and seconds in range.
_TIME_FORM = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|\+00:00)$"
)
_Time = Annotated[str, StringConstraints(pattern=_TIME_FORM)]
TIMES = ("start_time", "answer_time", "end_time", "received_at")
_UTC_CHECK = list(UtcDatetime.__metadata__)  # type: ignore[attr-defined]  # its AfterValidator


def _fast_model(cdr: type[BaseModel] = CDR) -> type[BaseModel]:
    """``cdr`` (``CDR``) with its ``UtcDatetime`` fields read as ``_Time`` strings."""
    fields: dict[str, Any] = {}
    times = []
    for name, info in cdr.model_fields.items():
        if info.annotation is datetime and info.metadata == _UTC_CHECK:  # UtcDatetime
            fields[name] = (_Time, ...) if info.is_required() else (_Time, info.default)
            times.append(name)
        elif info.annotation == UtcDatetime | None and not info.metadata:
            fields[name] = (_Time | None, info.default)
            times.append(name)
        else:
            fields[name] = (info.annotation, info)
    if tuple(times) != TIMES:  # pragma: no cover - CDR changed: this module must follow it
        raise RuntimeError(f"CDR's times are {times}, not {TIMES}")
    # A validator method on CDR (model or field) would not be part of the copy, which would then
    # accept what CDR refuses: refuse to start instead (the copy only carries fields).
    decorators = cdr.__pydantic_decorators__
    if any(
        (
            decorators.validators,
            decorators.field_validators,
            decorators.root_validators,
            decorators.model_validators,
        )
    ):
        raise RuntimeError(f"{cdr.__name__} has validator methods; cdr_billing.decode lacks them")
    model: type[BaseModel] = create_model(
        "FastCDR", __config__=ConfigDict(**cdr.model_config), **fields
    )
    return model


_FAST = _fast_model().__pydantic_validator__
_time = datetime.fromisoformat


def decode_facts(value: bytes | str) -> CallFacts:
    """``facts(CDR.from_json(value))``: the same facts, or the same ``ValidationError``."""
    try:
        cdr = _FAST.validate_json(value)
        answer = cdr.answer_time
        end = cdr.end_time
        start = _time(cdr.start_time)
        answer = None if answer is None else _time(answer)
        end = None if end is None else _time(end)
        if cdr.received_at is not None:
            _time(cdr.received_at)  # refused by CDR too: its error, below
    except ValueError:  # pydantic's ValidationError is one: CDR's own verdict and value, below
        pass
    else:
        return _facts(cdr, start, answer, end)
    return facts(CDR.from_json(value))


def facts(cdr: CDR) -> CallFacts:
    return _facts(cdr, cdr.start_time, cdr.answer_time, cdr.end_time)


def _facts(cdr: Any, start: datetime, answer: datetime | None, end: datetime | None) -> CallFacts:
    """The facts of ``cdr`` (a ``CDR``, or ``_FAST``'s model) with its three times as given."""
    disposition = cdr.disposition
    return make_facts(  # CallFacts(...), positional in its field order
        cdr.call_id,
        cdr.account or cdr.caller_number or None,  # subscriber_of
        cdr.source,
        cdr.caller_number,
        cdr.callee_number,
        cdr.account,
        start,
        answer,
        end,
        cdr.duration_s,
        cdr.billsec_s,
        disposition._value_ if disposition is not None else None,  # .value: a property
    )
