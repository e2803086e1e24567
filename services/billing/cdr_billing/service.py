"""Billing's work: normalised CDRs in, one immutable charge per call and ``cdr.rated`` out.

Per consumed batch (the offsets are committed by ``cdrkit.bus.runner`` afterwards):
1. decode the CDRs (one that does not decode goes to ``cdr.dlq`` with the reason) and keep what
   billing needs of each (``billing_calls``), the subscriber being the CDR's ``account``, else
   its ``caller_number``;
2. price each call with the version of its subscriber's tariff (an assignment, else
   ``BILLING_DEFAULT_TARIFF``) in force when the call started; a call that cannot be priced (no
   tariff, no matching destination, no end time) gets no charge and keeps the reason, for
   ``cdrflow rerate``; a call that was not answered gets a zero charge, so every priced call has
   exactly one charge;
3. one database transaction writes the calls and the charges, ``ON CONFLICT (call_id) DO
   NOTHING``: a redelivered CDR changes nothing, the first charge of a call stands forever;
4. ``cdr.rated`` is published for every charge of the batch (new ones, and the stored ones of
   redelivered calls, so a crash between 3 and 4 loses no message) and acknowledged before the
   offsets are committed. ``cdr.rated`` is at-least-once; its consumers dedupe on the call id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from cdr_billing.bills import (
    check_closed,
    format_duration,
    format_price,
    last_closed_month,
    month_bounds,
    parse_period,
)
from cdr_billing.decode import decode_facts, facts  # noqa: F401 (facts: as it was, here too)
from cdr_billing.metrics import (
    ADJUSTMENTS,
    AMOUNT,
    BILL_SECONDS,
    CHARGES,
    RERATED,
    TARIFF_LOAD_SECONDS,
    UNPRICED,
)
from cdr_billing.money import is_exact, minor_exponent, money, total
from cdr_billing.rating import (
    ZERO_AMOUNT,
    CallFacts,
    Rated,
    Unpriced,
    pick_version,
    rate_call,
)
from cdr_billing.repository import BillingRepository
from cdr_billing.schemas import AdjustmentIn, TariffIn
from cdr_billing.settings import BillingSettings
from cdr_billing.tariff import (
    Band,
    Destination,
    Tariff,
    default_tariff,
    validate,
)
from cdrkit.bus import Message, Producer, Record
from cdrkit.db import dumps_json
from cdrkit.pacing import Slicer
from cdrmodel import CDR, DeadLetter, topics
from cdrmodel.errors import CdrflowError, InvalidInput, NotFound

log = logging.getLogger(__name__)

RERATE_PAGE = 1000


class NotPriced(CdrflowError):
    code = "not_priced"
    status = 409


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


class BelowZero(CdrflowError):
    code = "below_zero"
    status = 409


def subscriber_of(cdr: CDR) -> str | None:
    """Whose bill a call lands on: the CDR's account, else its caller number."""
    return cdr.account or cdr.caller_number or None


def facts_from_row(row: Any) -> CallFacts:
    return CallFacts(
        **{f: getattr(row, f) for f in CallFacts.__dataclass_fields__}  # same names as columns
    )


def call_row(call: CallFacts, now: datetime, reason: str | None) -> dict[str, Any]:
    """The ``billing_calls`` row: ``CallFacts``'s fields in their order (a dict display rather
    than a comprehension over the fields: ``tests/billing/test_explanation.py`` holds it to
    that), then the consumption's time and the reason it has no charge."""
    return {
        "call_id": call.call_id,
        "subscriber": call.subscriber,
        "source": call.source,
        "caller_number": call.caller_number,
        "callee_number": call.callee_number,
        "account": call.account,
        "start_time": call.start_time,
        "answer_time": call.answer_time,
        "end_time": call.end_time,
        "duration_s": call.duration_s,
        "billsec_s": call.billsec_s,
        "disposition": call.disposition,
        "consumed_at": now,
        "unpriced_reason": reason,
    }


def charge_row(call: CallFacts, rated: Rated, now: datetime) -> dict[str, Any]:
    assert call.subscriber is not None
    return {
        "call_id": call.call_id,
        "subscriber": call.subscriber,
        "outcome": rated.outcome,
        "destination": call.callee_number,
        "start_time": call.start_time,
        "end_time": call.end_time or rated.end,
        "billed_s": rated.billed_s,
        "amount": rated.amount,
        "currency": rated.currency,
        "tariff_name": rated.tariff_name,
        "tariff_version": rated.tariff_version,
        "explanation": rated.explanation_json,  # its JSON text, bound as it is (repository)
        "rated_at": now,
    }


def rated_record(row: Any, account: str | None) -> Record:
    """The ``cdr.rated`` message of a charge row (ARCHITECTURE §3): json.dumps's text of
    ``rated_value``, written directly when the values have the types billing stores (strings,
    an int version, a Decimal amount, an aware datetime): ~5 µs less a charge than encoding
    the dict (issue 15, seventh round; ``tests/billing/test_rated_record.py`` holds it to
    json.dumps)."""
    call_id = row["call_id"]
    subscriber = row["subscriber"]
    outcome = row["outcome"]
    currency = row["currency"]
    tariff = row["tariff_name"]
    version = row["tariff_version"]
    if (
        type(call_id) is str
        and type(subscriber) is str
        and (account is None or type(account) is str)
        and type(outcome) is str
        and type(currency) is str
        and type(tariff) is str
        and type(version) is int
    ):
        text = (
            f'{{"call_id": {_json_str(call_id)}, "subscriber": {_json_str(subscriber)}, '
            f'"account": {"null" if account is None else _json_str(account)}, '
            f'"outcome": {_json_str(outcome)}, "amount": {_amount_text(row["amount"])}, '
            f'"currency": {_json_str(currency)}, "tariff": {_json_str(tariff)}, '
            f'"tariff_version": {int.__repr__(version)}, '
            f'"rated_at": {_json_str(_isoformat(row["rated_at"]))}}}'
        )
    else:  # not a type billing stores: the general encoder
        text = dumps_json(rated_value(row, account))
    return _record(text.encode(), call_id.encode())


# ``Record(value=..., key=...)`` for less: a frozen dataclass's ``__init__`` sets each field
# through ``object.__setattr__`` (~1,300 instructions a field, issue 15 seventh round); a twin
# of its layout is filled and given ``Record`` as its class, as ``cdrkit.frozen.builder`` does
# (which refuses classes with defaults). Only while the layout is the one filled here.
_RecordTwin: Any = type("_RecordTwin", (), {"__slots__": Record.__slots__})
_TWIN_OK = Record.__slots__ == ("value", "key", "headers")


def _record(value: bytes, key: bytes) -> Record:
    """``Record(value=value, key=key)``."""
    if not _TWIN_OK:  # pragma: no cover - another layout: the class's own __init__
        return Record(value=value, key=key)
    twin = _RecordTwin()
    twin.value = value
    twin.key = key
    twin.headers = ()
    twin.__class__ = Record
    return twin  # type: ignore[no-any-return]


_ZERO_TEXT = _json_str(money(ZERO_AMOUNT))


def _amount_text(amount: Decimal) -> str:
    """``_json_str(money(amount))``; an unpriced charge's zero (one object, most charges) is
    written once."""
    return _ZERO_TEXT if amount is ZERO_AMOUNT else _json_str(money(amount))


def rated_value(row: Any, account: str | None) -> dict[str, Any]:
    """What a ``cdr.rated`` message says, as a dict (its text: ``rated_record``)."""
    return {
        "call_id": row["call_id"],
        "subscriber": row["subscriber"],
        "account": account,
        "outcome": row["outcome"],
        "amount": money(row["amount"]),
        "currency": row["currency"],
        "tariff": row["tariff_name"],
        "tariff_version": row["tariff_version"],
        "rated_at": row["rated_at"].isoformat(),
    }


_last_time: tuple[datetime, str] | None = None


def _isoformat(value: datetime) -> str:
    """``value.isoformat()``; the text of the last time given is kept (a batch's new charges
    share one ``rated_at``)."""
    global _last_time  # noqa: PLW0603 (one entry, replaced)
    last = _last_time
    if last is not None and last[0] is value:
        return last[1]
    text = value.isoformat()
    _last_time = (value, text)
    return text


def count_charges(rows: Iterable[dict[str, Any]]) -> None:
    """The charges and amounts counters for new charges: one ``labels`` lookup per outcome and
    currency of the batch, not per charge."""
    outcomes: dict[str, int] = {}
    amounts: dict[str, float] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        amounts[r["currency"]] = amounts.get(r["currency"], 0.0) + float(r["amount"])
    for outcome, n in outcomes.items():
        CHARGES.labels(outcome).inc(n)
    for currency, amount in amounts.items():
        AMOUNT.labels(currency).inc(amount)


@dataclass
class Priced:
    charges: list[dict[str, Any]]
    unpriced: dict[str, tuple[str, str]]  # call id -> (code, reason)


class BillingService:
    def __init__(
        self, settings: BillingSettings, repo: BillingRepository, producer: Producer
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.producer = producer
        self.zone = ZoneInfo(settings.timezone)
        self.tariffs: dict[str, list[Tariff]] = {}
        self._loaded: set[int] = set()  # ids of the tariff versions in self.tariffs

    # -- tariffs -------------------------------------------------------------------------------

    async def ensure_default_tariff(self) -> None:
        """Create the §6 telephone-bill tariff as version 1 of ``default`` if it is missing."""
        if self.settings.default_tariff != "default":
            return
        if await self.repo.ensure_tariff(default_tariff(self.settings.timezone), datetime.now(UTC)):
            log.info("created the default tariff (timezone %s)", self.settings.timezone)

    async def refresh_tariffs(
        self, session: AsyncSession | None = None, ids: set[int] | None = None
    ) -> None:
        """Load the tariff versions created since the last load (by any replica). Ids become
        visible in commit order, not id order: what is missing is looked for by id, not as
        "above the highest id loaded". ``session``: look in that one; ``ids``: the ids of every
        version, read already (a batch's ``BillingRepository.batch_reads``)."""
        if ids is None:
            ids = await self.repo.tariff_ids(session)
        missing = ids - self._loaded
        if not missing:
            return
        started = time.perf_counter()
        for t in await self.repo.load_tariffs(min(missing) - 1):
            if t.id in self._loaded:
                continue
            versions = self.tariffs.setdefault(t.name, [])
            versions.append(t)
            versions.sort(key=lambda v: (v.effective_from, v.version))
            self._loaded.add(t.id or 0)
        TARIFF_LOAD_SECONDS.set(time.perf_counter() - started)

    async def create_tariff(self, body: TariffIn) -> Tariff:
        """Validate and store a new version of a tariff; calls priced already keep their price."""
        t = Tariff(
            name=body.name,
            version=0,
            effective_from=body.effective_from or datetime.now(UTC),
            currency=body.currency,
            timezone=body.timezone or self.settings.timezone,
            standing_charge=body.standing_charge,
            minimum_charge=body.minimum_charge,
            unit_s=body.unit_s,
            first_increment_s=body.increments.first_s,
            next_increment_s=body.increments.next_s,
            rounding=body.increments.rounding,
            bands=[Band(b.name, tuple(b.days), b.start, b.end) for b in body.bands],
            destinations=[
                Destination(d.prefix, d.name, d.prices, d.standing_charge)
                for d in body.destinations
            ],
            overnight=body.overnight,
            extension_ranges=tuple(body.extension_ranges),
            free_prefixes=tuple(body.free_prefixes),
        )
        validate(t)
        await self.repo.insert_tariff(t, datetime.now(UTC))
        await self.refresh_tariffs()
        log.info("tariff %s version %d created", t.name, t.version)
        return t

    def versions(self, name: str) -> list[Tariff]:
        versions = self.tariffs.get(name)
        if not versions:
            raise NotFound(f"no tariff named {name!r}")
        return sorted(versions, key=lambda v: v.version)

    async def assign(self, subscriber: str, tariff_name: str) -> None:
        await self.refresh_tariffs()
        self.versions(tariff_name)
        await self.repo.assign(subscriber, tariff_name, datetime.now(UTC))

    # -- rating --------------------------------------------------------------------------------

    def price(self, calls: Iterable[CallFacts], assigned: dict[str, str], now: datetime) -> Priced:
        out = Priced([], {})
        for call in calls:
            self._price_into(out, call, assigned, now)
        return out

    async def price_sliced(
        self, calls: Iterable[CallFacts], assigned: dict[str, str], now: datetime
    ) -> Priced:
        """``price``, giving the event loop back every ``cdrkit.pacing.SLICE_S`` (a consumed
        batch of a few hundred calls, in the all-in-one's one loop)."""
        out = Priced([], {})
        slicer = Slicer()
        for call in calls:
            await slicer.tick()
            self._price_into(out, call, assigned, now)
        return out

    def _price_into(
        self, out: Priced, call: CallFacts, assigned: dict[str, str], now: datetime
    ) -> None:
        try:
            rated = self.rate(call, assigned)
        except Unpriced as exc:
            out.unpriced[call.call_id] = (exc.code, exc.reason)
            return
        out.charges.append(charge_row(call, rated, now))

    def rate(self, call: CallFacts, assigned: dict[str, str]) -> Rated:
        if call.subscriber is None:
            raise Unpriced(
                f"call {call.call_id} has neither an account nor a caller number", "no_subscriber"
            )
        name = assigned.get(call.subscriber, self.settings.default_tariff)
        versions = self.tariffs.get(name)
        if not versions:
            raise Unpriced(f"no tariff named {name!r} (for {call.subscriber})", "no_tariff")
        tariff = pick_version(versions, call.start_time)
        if tariff is None:
            raise Unpriced(
                f"no version of tariff {name!r} was in force at {call.start_time.isoformat()}",
                "no_tariff",
            )
        return rate_call(call, tariff)

    async def handle_batch(self, batch: Sequence[Message]) -> None:
        now = datetime.now(UTC)
        calls: dict[str, CallFacts] = {}
        dead: list[Record] = []
        slicer = Slicer()  # the loops give the event loop back (cdrkit.pacing)
        for msg in batch:
            await slicer.tick()
            try:
                call = decode_facts(msg.value)  # facts(CDR.from_json(...)) for less
            except ValidationError as exc:
                CHARGES.labels("invalid").inc()
                reason = f"not a CDR: {exc.error_count()} errors: {exc.errors()[0]['msg']}"
                log.warning("billing: %s is %s", msg, reason)
                letter = DeadLetter(
                    stage="billing",
                    error="bad_cdr",
                    reason=reason,
                    failed_at=now,
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    raw_value=msg.value.decode("utf-8", errors="replace"),
                )
                dead.append(Record(value=letter.to_json()))
                continue
            calls.setdefault(call.call_id, call)
        # One session for the batch's reads and writes (one pool checkout): one statement reads
        # the tariff ids and the assignments, one writes the calls and the charges (on SQLite
        # one transaction); the stored charges of redelivered calls are read only if any.
        async with self.repo.transaction() as session:
            ids, assigned = await self.repo.batch_reads(
                (c.subscriber for c in calls.values() if c.subscriber), session
            )
            await self.refresh_tariffs(ids=ids)
            priced = await self.price_sliced(calls.values(), assigned, now)
            call_rows = [
                call_row(
                    c, now, priced.unpriced[c.call_id][1] if c.call_id in priced.unpriced else None
                )
                for c in calls.values()
            ]
            inserted = await self.repo.store(call_rows, priced.charges, session)
            new = [r for r in priced.charges if r["call_id"] in inserted]
            # Redelivered calls: publish the charge as stored (the first one), never the new
            # price.
            again = [r["call_id"] for r in priced.charges if r["call_id"] not in inserted]
            stored: list[Any] = [
                row._mapping for row in await self.repo.charges_for(again, session)
            ]
        records = [rated_record(r, calls[r["call_id"]].account) for r in [*new, *stored]]
        if records:
            await self.producer.send_many(topics.RATED, records)
        if dead:
            await self.producer.send_many(topics.DLQ, dead)
        count_charges(new)
        CHARGES.labels("duplicate").inc(len(stored))
        for code, reason in priced.unpriced.values():
            CHARGES.labels("unpriced").inc()
            UNPRICED.labels(code).inc()
            log.info("billing: unpriced: %s", reason)

    async def rerate(self, since: datetime, until: datetime) -> dict[str, int]:
        """Price the calls that started in ``[since, until)`` and have no charge yet, with the
        tariffs as they are now. Calls with a charge are never touched."""
        await self.refresh_tariffs()
        examined = priced_n = still = 0
        after = ""
        while True:
            rows = await self.repo.unpriced_calls(since, until, RERATE_PAGE, after)
            if not rows:
                break
            after = rows[-1].call_id
            calls = {r.call_id: facts_from_row(r) for r in rows}
            examined += len(calls)
            now = datetime.now(UTC)
            assigned = await self.repo.assignments(
                c.subscriber for c in calls.values() if c.subscriber
            )
            priced = self.price(calls.values(), assigned, now)
            inserted = await self.repo.store([], priced.charges)
            new = [r for r in priced.charges if r["call_id"] in inserted]
            if new:
                await self.producer.send_many(
                    topics.RATED, [rated_record(r, calls[r["call_id"]].account) for r in new]
                )
            count_charges(new)
            RERATED.inc(len(new))
            priced_n += len(new)
            still += len(priced.unpriced)
            await self.repo.set_unpriced({k: v[1] for k, v in priced.unpriced.items()})
        log.info("rerate %s..%s: %d examined, %d priced", since, until, examined, priced_n)
        return {"examined": examined, "priced": priced_n, "still_unpriced": still}

    # -- reading -------------------------------------------------------------------------------

    async def charge(self, call_id: str) -> dict[str, Any]:
        row = await self.repo.get_charge(call_id)
        if row is None:
            call = await self.repo.get_call(call_id)
            if call is not None and call.unpriced_reason:
                raise NotFound(f"call {call_id} has no charge yet: {call.unpriced_reason}")
            raise NotFound(f"no charge for call {call_id}")
        adjs = await self.repo.adjustments_for_call(call_id)
        charge_total = total([row.amount, *(a.amount for a in adjs)])
        return {
            "call_id": row.call_id,
            "subscriber": row.subscriber,
            "outcome": row.outcome,
            "destination": row.destination,
            "start_time": row.start_time.isoformat(),
            "end_time": row.end_time.isoformat(),
            "billed_s": row.billed_s,
            "amount": money(row.amount),
            "currency": row.currency,
            "tariff": {"name": row.tariff_name, "version": row.tariff_version},
            "rated_at": row.rated_at.isoformat(),
            "explanation": row.explanation,
            "adjustments": [adjustment_view(a) for a in adjs],
            "total": money(charge_total),
        }

    async def add_adjustment(self, call_id: str, body: AdjustmentIn) -> dict[str, Any]:
        """A changed price is an entry of its own, listed on the bill; the charge stays."""
        row = await self.repo.get_charge(call_id)
        if row is None:
            call = await self.repo.get_call(call_id)
            if call is not None:
                raise NotPriced(
                    f"call {call_id} has no charge yet ({call.unpriced_reason}): price it with "
                    "`cdrflow rerate` first"
                )
            raise NotFound(f"no charge for call {call_id}")
        self._check_amount(body, row.currency)
        adj = {
            "call_id": call_id,
            "subscriber": row.subscriber,
            "call_end_time": row.end_time,
            "amount": body.amount,
            "currency": row.currency,
            "reason": body.reason,
            "created_at": datetime.now(UTC),
        }
        view = adjustment_view({**adj, "id": 0})  # built before the insert: it cannot fail after

        def floor(charge: Decimal, amounts: list[Decimal]) -> None:
            after = total([charge, *amounts])
            if body.kind == "correction" and body.amount < 0 and after < 0:
                raise BelowZero(
                    f"this correction would take call {call_id}'s total to {money(after)} "
                    f"{row.currency}, below zero; to pay money back to the subscriber send it "
                    'with "kind": "credit"'
                )

        view["id"] = await self.repo.add_adjustment(adj, floor)
        ADJUSTMENTS.inc()
        return view

    def _check_amount(self, body: AdjustmentIn, currency: str) -> None:
        amount, limit = body.amount, self.settings.max_adjustment
        if not is_exact(amount, currency):
            raise InvalidAmount(
                f"amount {amount} has more decimals than {currency}'s minor unit "
                f"({minor_exponent(currency)})"
            )
        if abs(amount) > limit:
            raise InvalidAmount(
                f"amount {amount} is larger than BILLING_MAX_ADJUSTMENT ({limit} {currency})"
            )
        if amount == 0:
            raise InvalidAmount("an adjustment of zero changes nothing")
        if body.kind == "credit" and amount > 0:
            raise InvalidAmount('a "credit" lowers the charge: its amount must be negative')

    async def bill(self, subscriber: str, period: str | None) -> dict[str, Any]:
        """A closed month's bill, or with ``period=current`` the month in progress so far
        (``provisional``: calls still arriving, late CDRs and adjustments can change it)."""
        started = time.perf_counter()
        now = datetime.now(UTC)
        zone = self.zone
        provisional = False
        if period and period.strip().lower() == "current":
            local = now.astimezone(zone)
            year, month, provisional = local.year, local.month, True
        elif period:
            year, month = parse_period(period)
            check_closed(year, month, now, zone)
        else:
            year, month = last_closed_month(now, zone)
        start, end = month_bounds(year, month, zone)
        rows, adjs = await self.repo.bill_rows(subscriber, start, end)
        currency = rows[0].currency if rows else self._default_currency()
        items = []
        for r in rows:
            local = r.start_time.astimezone(zone)
            items.append(
                {
                    "call_id": r.call_id,
                    "destination": r.destination,
                    "start_date": local.strftime("%Y-%m-%d"),
                    "start_time": local.strftime("%H:%M:%S"),
                    "duration": format_duration(r.billed_s),
                    "price": format_price(r.amount, r.currency),
                    "amount": money(r.amount),
                }
            )
        adj_items = []
        bill_total = total([*(r.amount for r in rows), *(a.amount for a in adjs)])
        for a in adjs:
            adj_items.append({**adjustment_view(a), "price": format_price(a.amount, a.currency)})
        BILL_SECONDS.observe(time.perf_counter() - started)
        return {
            "subscriber": subscriber,
            "period": f"{year:04d}-{month:02d}",
            "timezone": self.settings.timezone,
            "currency": currency,
            "total": money(bill_total),
            "total_price": format_price(bill_total, currency),
            "calls": items,
            "adjustments": adj_items,
            "provisional": provisional,
            **({"as_of": now.isoformat()} if provisional else {}),
        }

    async def assignment(self, subscriber: str) -> dict[str, Any]:
        """The tariff a subscriber's calls are priced with: its assignment, else the default."""
        row = await self.repo.get_assignment(subscriber)
        if row is None:
            return {
                "subscriber": subscriber,
                "tariff": self.settings.default_tariff,
                "assigned": False,
                "assigned_at": None,
            }
        return {
            "subscriber": subscriber,
            "tariff": row.tariff_name,
            "assigned": True,
            "assigned_at": row.assigned_at.isoformat(),
        }

    async def list_charges(
        self,
        subscriber: str,
        since: datetime | None,
        until: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], tuple[datetime, str] | None]:
        """A subscriber's charges, latest end time first, keyset-paged on (end_time, call_id)."""
        rows = await self.repo.list_charges(subscriber, since, until, after, limit)
        items = [
            {
                "call_id": r.call_id,
                "subscriber": r.subscriber,
                "outcome": r.outcome,
                "destination": r.destination,
                "start_time": r.start_time.isoformat(),
                "end_time": r.end_time.isoformat(),
                "billed_s": r.billed_s,
                "amount": money(r.amount),
                "currency": r.currency,
                "tariff": {"name": r.tariff_name, "version": r.tariff_version},
                **({"reason": r.explanation.get("reason")} if r.outcome != "priced" else {}),
            }
            for r in rows
        ]
        last = (rows[-1].end_time, rows[-1].call_id) if len(rows) == limit else None
        return items, last

    def _default_currency(self) -> str:
        versions = self.tariffs.get(self.settings.default_tariff)
        return versions[-1].currency if versions else "BRL"


def adjustment_view(a: Any) -> dict[str, Any]:
    get = a.__getitem__ if isinstance(a, dict) else lambda k: getattr(a, k)
    return {
        "id": get("id"),
        "call_id": get("call_id"),
        "amount": money(get("amount")),
        "currency": get("currency"),
        "reason": get("reason"),
        "created_at": get("created_at").isoformat(),
    }
