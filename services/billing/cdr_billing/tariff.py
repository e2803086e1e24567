"""Tariffs: the model, its week of time bands, validation and the default; pure code, no I/O.

A tariff *version* is immutable. It has a currency, a timezone, time bands that cover the week
(weekdays and a wall-clock range in that timezone), billing increments (the first increment,
then each subsequent one, rounded ``down`` = only completed increments count, or ``up``), a
standing (connection) charge, a minimum charge, and destinations: a price per ``unit_s`` seconds
per band, chosen by the longest prefix of the called number.
The rating of one call against a tariff is ``cdr_billing.rating``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdrkit.frozen import builder
from cdrmodel.errors import InvalidInput

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_S = 86_400
WEEK_S = 7 * DAY_S
CENT = Decimal("0.01")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAYS_KEPT = 4096  # local days whose schedule in UTC a tariff version keeps (``_day_pieces``)
Rounding = Literal["down", "up"]
Overnight = Literal["same_day", "next_day"]
# The fields the explanation's kept texts are made of (``Tariff._texts``).
_TEXT_PARTS = frozenset(
    {
        "name",
        "version",
        "effective_from",
        "currency",
        "timezone",
        "unit_s",
        "first_increment_s",
        "next_increment_s",
        "rounding",
    }
)
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")


class InvalidTariff(InvalidInput):
    code = "invalid_tariff"
    status = 422


def parse_clock(value: str, what: str) -> int:
    """``HH:MM[:SS]`` → seconds after midnight; ``24:00`` is the end of the day."""
    m = _TIME.match(value)
    if not m:
        raise InvalidTariff(f"{what}: {value!r} is not a time of day like 06:00 or 22:00:00")
    h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
    secs = h * 3600 + mi * 60 + s
    if mi > 59 or s > 59 or secs > DAY_S:
        raise InvalidTariff(f"{what}: {value!r} is not a time of day between 00:00 and 24:00")
    return secs


def fmt_clock(secs: int) -> str:
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


@dataclass(frozen=True, slots=True)
class Band:
    name: str
    days: tuple[str, ...]
    start: str
    end: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "days": list(self.days), "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class Destination:
    prefix: str
    name: str
    prices: Mapping[str, Decimal]  # band name -> price per unit_s seconds
    standing_charge: Decimal | None = None  # overrides the tariff's

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prefix": self.prefix,
            "name": self.name,
            "prices": {k: str(v) for k, v in self.prices.items()},
        }
        if self.standing_charge is not None:
            out["standing_charge"] = str(self.standing_charge)
        return out


@dataclass(frozen=True, slots=True)
class Segment:
    band: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


_segment = builder(Segment)  # Segment(...) for less (cdrkit.frozen)


@dataclass
class Tariff:
    """One version of a named tariff, compiled for rating (longest-prefix index, day schedule)."""

    name: str
    version: int
    effective_from: datetime
    currency: str
    timezone: str
    standing_charge: Decimal
    minimum_charge: Decimal
    unit_s: int
    first_increment_s: int
    next_increment_s: int
    rounding: Rounding
    bands: Sequence[Band]
    destinations: Sequence[Destination]
    id: int | None = None
    # How a band whose end is not after its start reads (see ``week_intervals``).
    overnight: Overnight = "same_day"
    # On-net rules: a called number in one of these ranges ("1000-1999") or starting with one of
    # these prefixes is not charged (outcome "free", the reason in the explanation).
    extension_ranges: Sequence[str] = ()
    free_prefixes: Sequence[str] = ()
    _zone: ZoneInfo = field(init=False, repr=False)
    _by_prefix: dict[str, Destination] = field(init=False, repr=False)
    _max_prefix: int = field(init=False, repr=False)
    _schedule: list[list[tuple[int, int, str]]] = field(init=False, repr=False)
    _ranges: list[tuple[int, int, int, int]] = field(init=False, repr=False)
    # Each local day's schedule as UTC times (``_day_pieces``), made once per day and version.
    _days: dict[date, list[tuple[datetime, datetime, str]]] = field(
        init=False, repr=False, compare=False
    )
    # The explanation's texts of this version's parts (``cdr_billing.rating._tariff_texts``),
    # forgotten whenever a field they are made of is set (``__setattr__``).
    _texts: Any = field(default=None, init=False, repr=False, compare=False)
    # The priced calls' amounts and explanation texts by destination and seconds per band
    # (``cdr_billing.rating._priced``), forgotten whenever any field is set (``__setattr__``).
    _priced: Any = field(default=None, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in _TEXT_PARTS:
            object.__setattr__(self, "_texts", None)
        if name[0] != "_":
            object.__setattr__(self, "_priced", None)

    def __post_init__(self) -> None:
        self._zone = load_zone(self.timezone)
        self._by_prefix = {d.prefix: d for d in self.destinations}
        self._max_prefix = max((len(p) for p in self._by_prefix), default=0)
        self._schedule = day_schedule(self.bands, self.overnight)
        self._ranges = [parse_range(r) for r in self.extension_ranges]
        self._days = {}

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def lookup(self, number: str) -> Destination | None:
        """The destination with the longest prefix of ``number`` (``""`` matches any number)."""
        by_prefix = self._by_prefix
        for n in range(min(len(number), self._max_prefix), -1, -1):
            dest = by_prefix.get(number[:n])
            if dest is not None:
                return dest
        return None

    def on_net(self, number: str) -> str | None:
        """Why a call to ``number`` (digits) is free under this tariff's on-net rules, or None."""
        if not number:
            return None
        for text, (lo, hi, min_len, max_len) in zip(
            self.extension_ranges, self._ranges, strict=True
        ):
            if min_len <= len(number) <= max_len and lo <= int(number) <= hi:
                return f"on-net: {number} is in the extension range {text}"
        for prefix in self.free_prefixes:
            if number.startswith(prefix):
                return f"free: {number} starts with the free prefix {prefix}"
        return None

    def rules(self) -> dict[str, Any]:
        """What the tariff row keeps beside its columns."""
        return {
            "overnight": self.overnight,
            "extension_ranges": list(self.extension_ranges),
            "free_prefixes": list(self.free_prefixes),
        }

    def segments(self, begin: datetime, end: datetime) -> list[Segment]:
        """``[begin, end)`` cut at the band boundaries (wall clock in the tariff's timezone),
        adjacent pieces of the same band merged."""
        out: list[Segment] = []
        if end <= begin:
            return out
        zone = self._zone
        day = begin.astimezone(zone).date()
        kept = self._days.get(day)
        if kept is None:
            kept = self._day_pieces(day)
        # Most calls lie inside one piece of their first day: the loop below would cut exactly
        # [begin, end) of that piece's band (whatever the pieces' order: the pieces before it
        # in the list end by begin, and once [begin, end) is cut nothing more is).
        for piece_s, piece_e, band in kept:
            if begin < piece_e:
                if piece_s <= begin and end <= piece_e:
                    return [_segment(band, begin, end)]
                break
        last = end.astimezone(zone).date()
        while day <= last:
            if kept is None:
                kept = self._days.get(day)
                if kept is None:
                    kept = self._day_pieces(day)
            for piece_s, piece_e, band in kept:
                s, e = max(piece_s, begin), min(piece_e, end)
                if out:
                    # A boundary inside a DST gap maps past the next one: never bill a second
                    # twice (the pieces must stay in order and not overlap).
                    s = max(s, out[-1].end)
                if e <= s:
                    continue
                if out and out[-1].band == band and out[-1].end == s:
                    out[-1] = _segment(band, out[-1].start, e)
                else:
                    out.append(_segment(band, s, e))
            kept = None
            day += timedelta(days=1)
        return out

    def _day_pieces(self, day: date) -> list[tuple[datetime, datetime, str]]:
        """The schedule of ``day`` (a local date) as (start, end, band) in UTC, kept for the
        next call on that day (at most ``DAYS_KEPT`` days a version; then made afresh)."""
        zone = self._zone
        pieces = [
            (_local(day, start_s, zone), _local(day, end_s, zone), band)
            for start_s, end_s, band in self._schedule[day.weekday()]
        ]
        if len(self._days) >= DAYS_KEPT:
            self._days.clear()
        self._days[day] = pieces
        return pieces

    def billed_seconds(self, seconds: int) -> tuple[int, int]:
        """(billed seconds, increments counted) for ``seconds`` spent in one band."""
        first, nxt = self.first_increment_s, self.next_increment_s
        if seconds <= 0:
            return 0, 0
        if self.rounding == "down":
            if seconds < first:
                return 0, 0
            more = (seconds - first) // nxt
        else:
            more = 0 if seconds <= first else -(-(seconds - first) // nxt)
        return first + more * nxt, 1 + more

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "effective_from": self.effective_from.isoformat(),
            "currency": self.currency,
            "timezone": self.timezone,
            "standing_charge": str(self.standing_charge),
            "minimum_charge": str(self.minimum_charge),
            "unit_s": self.unit_s,
            "increments": {
                "first_s": self.first_increment_s,
                "next_s": self.next_increment_s,
                "rounding": self.rounding,
            },
            "bands": [b.as_dict() for b in self.bands],
            **self.rules(),
            "destination_count": len(self.destinations),
        }


def _local(day: date, secs: int, zone: ZoneInfo) -> datetime:
    if secs >= DAY_S:
        day, secs = day + timedelta(days=1), secs - DAY_S
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return datetime.combine(day, time(h, m, s), zone).astimezone(UTC)


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTariff(f"timezone {name!r} is not an IANA timezone name") from exc


def parse_range(text: str) -> tuple[int, int, int, int]:
    """``"1000-1999"`` → (low, high, fewest digits, most digits)."""
    m = re.fullmatch(r"(\d{1,15})-(\d{1,15})", text)
    if not m or int(m[1]) > int(m[2]):
        raise InvalidTariff(f"extension range {text!r} is not two numbers low-high like 1000-1999")
    return int(m[1]), int(m[2]), len(m[1]), len(m[2])


def week_intervals(
    bands: Iterable[Band], overnight: Overnight = "same_day"
) -> list[tuple[int, int, str]]:
    """Every band as (start, end, name) intervals in seconds of the week (Monday 00:00 = 0).

    A range whose end is not after its start crosses midnight. ``same_day`` (what an operator
    means by "Mon-Fri 22:00-06:00"): on each listed day, the clock times from start to midnight
    and from midnight to end, so the listed days' early hours are in the band and Saturday's are
    not. ``next_day`` (tariff versions stored before this rule existed): from start on each
    listed day into the next day's end (Friday 22:00 → Saturday 06:00)."""
    out: list[tuple[int, int, str]] = []
    for i, band in enumerate(bands):
        what = f"band {i + 1} ({band.name!r})"
        if not band.days:
            raise InvalidTariff(f"{what} has no days")
        start = parse_clock(band.start, f"{what} start")
        end = parse_clock(band.end, f"{what} end")
        length = end - start if end > start else DAY_S - start + end
        for d in band.days:
            if d not in DAYS:
                raise InvalidTariff(f"{what}: {d!r} is not a day (use {', '.join(DAYS)})")
            day0 = DAYS.index(d) * DAY_S
            if end <= start and overnight == "same_day":
                out.append((day0 + start, day0 + DAY_S, band.name))
                if end > 0:
                    out.append((day0, day0 + end, band.name))
                continue
            s = day0 + start
            e = s + length
            if e <= WEEK_S:
                out.append((s, e, band.name))
            else:  # Sunday night into Monday morning
                out.append((s, WEEK_S, band.name))
                out.append((0, e - WEEK_S, band.name))
    return sorted(out)


def check_week_cover(bands: Iterable[Band], overnight: Overnight = "same_day") -> None:
    """The bands must cover every second of the week exactly once."""
    at = 0
    for s, e, name in week_intervals(bands, overnight):
        if s < at:
            raise InvalidTariff(
                f"band {name!r} overlaps another band at {_week_time(s)}: "
                "every moment of the week must belong to exactly one band"
            )
        if s > at:
            raise InvalidTariff(
                f"no band covers {_week_time(at)} to {_week_time(s)}: "
                "the bands must cover the whole week"
            )
        at = e
    if at < WEEK_S:
        raise InvalidTariff(
            f"no band covers {_week_time(at)} to the end of Sunday: "
            "the bands must cover the whole week"
        )


def _week_time(secs: int) -> str:
    day, rem = divmod(secs, DAY_S)
    return f"{DAYS[day % 7]} {fmt_clock(rem)}"


def day_schedule(
    bands: Iterable[Band], overnight: Overnight = "same_day"
) -> list[list[tuple[int, int, str]]]:
    """Per weekday, the (start, end, band) pieces of that day in seconds after midnight."""
    days: list[list[tuple[int, int, str]]] = [[] for _ in DAYS]
    for start, e, name in week_intervals(bands, overnight):
        s = start
        while s < e:
            d = s // DAY_S
            cut = min(e, (d + 1) * DAY_S)
            days[d].append((s - d * DAY_S, cut - d * DAY_S, name))
            s = cut
    for pieces in days:
        pieces.sort()
    return days


def validate(t: Tariff) -> None:
    """Reject a tariff version that cannot price calls correctly, with the reason."""
    check_week_cover(t.bands, t.overnight)
    for prefix in t.free_prefixes:
        if not re.fullmatch(r"\d{1,32}", prefix):
            raise InvalidTariff(f"free prefix {prefix!r} is not a string of digits")
    if not re.fullmatch(r"[A-Z]{3}", t.currency):
        raise InvalidTariff(f"currency {t.currency!r} is not an ISO 4217 code like BRL")
    if t.unit_s <= 0 or t.first_increment_s <= 0 or t.next_increment_s <= 0:
        raise InvalidTariff("unit_s and both billing increments must be greater than 0 seconds")
    if t.standing_charge < 0 or t.minimum_charge < 0:
        raise InvalidTariff("the standing and minimum charges must not be negative")
    if not t.destinations:
        raise InvalidTariff('a tariff needs at least one destination (prefix "" matches any)')
    names = {b.name for b in t.bands}
    seen: set[str] = set()
    for d in t.destinations:
        if not re.fullmatch(r"\d{0,32}", d.prefix):
            raise InvalidTariff(f"destination prefix {d.prefix!r} is not a string of digits")
        if d.prefix in seen:
            raise InvalidTariff(f"destination prefix {d.prefix!r} appears twice")
        seen.add(d.prefix)
        missing = names - set(d.prices)
        if missing:
            raise InvalidTariff(
                f"destination {d.prefix!r} has no price for band(s) {', '.join(sorted(missing))}"
            )
        unknown = set(d.prices) - names
        if unknown:
            raise InvalidTariff(
                f"destination {d.prefix!r} prices unknown band(s) {', '.join(sorted(unknown))}"
            )
        if any(p < 0 for p in d.prices.values()) or (
            d.standing_charge is not None and d.standing_charge < 0
        ):
            raise InvalidTariff(f"destination {d.prefix!r} has a negative price")


def default_tariff(timezone: str) -> Tariff:
    """The telephone-bill tariff of ARCHITECTURE §6 (BRL): standard time 06:00 ≤ t < 22:00,
    0.36 standing + 0.09 per completed 60-s cycle; reduced time 22:00 ≤ t < 06:00, 0.36 only.
    Calls to a 4-digit extension (1000-9999, FusionPBX's numbering) are on-net: free."""
    return Tariff(
        name="default",
        version=1,
        effective_from=EPOCH,
        currency="BRL",
        timezone=timezone,
        standing_charge=Decimal("0.36"),
        minimum_charge=Decimal("0"),
        unit_s=60,
        first_increment_s=60,
        next_increment_s=60,
        rounding="down",
        bands=[
            Band("standard", DAYS, "06:00", "22:00"),
            Band("reduced", DAYS, "22:00", "06:00"),
        ],
        destinations=[
            Destination("", "any", {"standard": Decimal("0.09"), "reduced": Decimal("0")})
        ],
        extension_ranges=("1000-9999",),
    )
