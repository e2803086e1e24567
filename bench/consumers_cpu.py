"""The parser's and billing's CPU per CDR in process, without a broker or a database: the harness
behind the fifth round's consumer figures (docs/performance.md, "Parser and billing (h5parser)").
Not part of ``make bench``.

The e2e bench's three FreeSWITCH fixtures with fresh uuids, as ingest's inline envelopes, in
batches of 130 (the e2e run's batch size when the consumers run behind). Four figures, each the
best and the median of ``rounds`` runs of ``time.thread_time`` over all the CDRs:

* parser, store side: ``cdr_row``, ``raw_row``, ``pack_raw`` and the column arrays of the store
  statement, bound by a PostgreSQL (asyncpg) engine's dialect (its JSON serializer included);
* parser, in process: the envelope's decoding, the mapping, the rows and their checks,
  ``CDR.to_json`` and the store side;
* billing, in process: ``CDR.from_json``, the facts, the rating, both statements' column arrays and
  the ``cdr.rated`` messages;
* billing, rows: the same without the decoding.

Run it in two worktrees one after the other, alternating, to compare two versions:
``.venv/bin/python -m bench.consumers_cpu [rounds]``.
"""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from bench.bench_e2e import templates
from cdr_billing.models import billing_calls, charges
from cdr_billing.repository import _InsertIgnore
from cdr_billing.service import BillingService, call_row, facts, rated_record
from cdr_billing.settings import BillingSettings
from cdr_billing.tariff import default_tariff
from cdr_parser.outcomes import outcome_of
from cdr_parser.repository import _CDR_ARRAYS, _RAW_ARRAYS, _first_per_call
from cdr_parser.rows import CDR_TEXT, RAW_TEXT, cdr_row, pack_raw, raw_row, unstorable
from cdrkit.db import create_engine
from cdrmodel import CDR, Origin, PayloadKind, RawEnvelope
from cdrmodel.envelope import inline_envelope_json

N, BATCH = 1560, 130
# A fixed moment for the deterministic inputs of ``bench.instructions`` (2026-12-03 12:00 UTC).
FIXED_EPOCH = 1_796_299_200


def posts(n: int = N, *, fixed: bool = False) -> list[tuple[bytes, str, list[str]]]:
    """``n`` posts of the e2e fixtures, each a new call: the url-encoded form body, its document
    and its uuids. ``fixed``: the same on every run (uuids from a counter, times at
    ``FIXED_EPOCH``), for instruction counts; else fresh uuids and times now, as the e2e load."""
    forms = templates(FIXED_EPOCH if fixed else None)
    made = 0
    out = []
    for i in range(n):
        body, count = forms[i % len(forms)]
        uuids = []
        for j in range(count):
            made += 1
            uuids.append(str(uuid.UUID(int=made)) if fixed else str(uuid.uuid4()))
            body = body.replace(f"@@U{j}@@", uuids[-1])
        out.append((body.encode(), unquote_plus(body[4:]), uuids))
    return out


def envelopes(n: int = N, *, fixed: bool = False) -> list[bytes]:
    """``n`` inline raw envelopes as ingest writes them for ``posts(n, fixed=fixed)``."""
    received = datetime.fromtimestamp(FIXED_EPOCH, UTC) if fixed else None
    return [
        inline_envelope_json(
            id=uuids[0].replace("-", "") if fixed else uuid.uuid4().hex,
            kind=PayloadKind.FREESWITCH_XML,
            received_at=received or datetime.now(UTC),
            source=Origin(remote_addr="127.0.0.1"),
            content_type="application/x-www-form-urlencoded",
            call_id=uuids[0],
            a_leg=None,
            payload=xml,
            sha256=hashlib.sha256(xml.encode()).hexdigest(),
        )
        for _, xml, uuids in posts(n, fixed=fixed)
    ]


class Consumers:
    """The parser's and billing's per-CDR work on ``msgs`` (inline envelopes), as the services do
    it per batch of ``BATCH``, without a broker or a database."""

    def __init__(self, msgs: list[bytes], now: datetime) -> None:
        self.dialect = create_engine("postgresql+asyncpg://u:p@127.0.0.1:1/none").dialect
        self.now = now
        self.msgs = msgs
        self.envs = [RawEnvelope.from_json(m) for m in msgs]
        cdrs = [outcome_of(e, None, 1e9) for e in self.envs]
        assert all(isinstance(c, CDR) for c in cdrs)
        self.mapped: list[CDR] = cdrs  # type: ignore[assignment]
        self.values = [c.to_json() for c in self.mapped]
        settings = BillingSettings()
        self.billing = BillingService(settings, None, None)  # type: ignore[arg-type]
        tariff = default_tariff(settings.timezone)
        tariff.id = 1
        self.billing.tariffs = {"default": [tariff]}
        self.calls_sql, self.charges_sql = _InsertIgnore(billing_calls), _InsertIgnore(charges)

    def parser_store(self) -> None:
        """The store side: rows, packed payloads and the statement's column arrays."""
        now, mapped, envs = self.now, self.mapped, self.envs
        for k in range(0, len(mapped), BATCH):
            rows = [cdr_row(c, now) for c in mapped[k : k + BATCH]]
            pairs = zip(envs[k : k + BATCH], mapped[k : k + BATCH], strict=True)
            raws = [raw_row(e, c.call_id, now) for e, c in pairs]
            _CDR_ARRAYS.arrays(self.dialect, _first_per_call(rows))
            _RAW_ARRAYS.arrays(self.dialect, [pack_raw(r) for r in _first_per_call(raws)])

    def parser_all(self) -> None:
        """Everything the parser does to a consumed envelope but the database and the produce."""
        now, msgs = self.now, self.msgs
        for k in range(0, len(msgs), BATCH):
            rows, raws = [], []
            for m in msgs[k : k + BATCH]:
                env = RawEnvelope.from_json(m)
                raw = raw_row(env, "", now)
                unstorable(raw, RAW_TEXT)
                cdr = outcome_of(env, None, 1e9)
                assert isinstance(cdr, CDR)
                row = cdr_row(cdr, now)
                unstorable(row, CDR_TEXT)
                rows.append(row)
                raw["call_id"] = cdr.call_id  # the checked row, as ParserService (ninth round)
                raws.append(raw)
                cdr.to_json()
            _CDR_ARRAYS.arrays(self.dialect, _first_per_call(rows))
            _RAW_ARRAYS.arrays(self.dialect, [pack_raw(r) for r in _first_per_call(raws)])

    def rate(self, batch: list[CDR]) -> None:
        calls = {c.call_id: facts(c) for c in batch}
        priced = self.billing.price(calls.values(), {}, self.now)
        self.calls_sql.columns.arrays(
            self.dialect, [call_row(c, self.now, None) for c in calls.values()]
        )
        self.charges_sql.columns.arrays(self.dialect, priced.charges)
        for r in priced.charges:
            rated_record(r, calls[r["call_id"]].account)

    def billing_all(self) -> None:
        """Billing on a consumed ``cdr.normalized`` batch: decode, facts, rating, rows, messages."""
        for k in range(0, len(self.values), BATCH):
            self.rate([CDR.from_json(v) for v in self.values[k : k + BATCH]])

    def billing_rows(self) -> None:
        for k in range(0, len(self.mapped), BATCH):
            self.rate(self.mapped[k : k + BATCH])


def main(rounds: int = 7) -> None:
    c = Consumers(envelopes(), datetime.now(UTC))
    figures: list[tuple[str, Callable[[], None]]] = [
        ("parser store side", c.parser_store),
        ("parser in process", c.parser_all),
        ("billing in process", c.billing_all),
        ("billing rows", c.billing_rows),
    ]
    out = []
    for name, run in figures:
        spent = []
        for _ in range(rounds):
            started = time.thread_time()
            run()
            spent.append((time.thread_time() - started) / N * 1e6)
        spent.sort()
        out.append(f"{name} {spent[0]:.1f} (median {spent[len(spent) // 2]:.1f})")
    print("µs/CDR: " + " | ".join(out))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
