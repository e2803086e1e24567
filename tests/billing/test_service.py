"""Billing end to end through its consumer (memory bus) and HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from cdr_billing.models import billing_calls, charges
from cdr_billing.service import BillingService
from cdrflow.platform import create_service_app
from cdrkit.bus import Message, Record, open_bus
from cdrmodel import CDR, topics
from cdrmodel.record import Disposition
from tests.e2e.conftest import serving, wait_for
from tests.loop_hold import loop_hold

ROOT = Path(__file__).resolve().parents[2]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event_cdr(
    call_id: str, start: str, end: str, *, caller: str = "11999998888", callee: str = "1133334444"
) -> CDR:
    """A CDR as the parser builds it from call start/end events."""
    s, e = at(start), at(end)
    return CDR(
        call_id=call_id,
        source="call.event",
        caller_number=caller,
        callee_number=callee,
        start_time=s,
        end_time=e,
        duration_s=int((e - s).total_seconds()),
        disposition="answered",  # type: ignore[arg-type]
    )


@dataclass
class Billing:
    app: FastAPI
    client: httpx.AsyncClient
    bus_url: str

    @property
    def service(self) -> BillingService:
        service: BillingService = self.app.state.cdrflow.components["billing"].service
        return service

    async def publish(self, *cdrs: CDR) -> None:
        runtime = self.app.state.cdrflow.runtime
        loop = self.app.state.cdrflow.components["billing"].loop
        before = loop.processed
        await runtime.bus.producer.send_many(
            topics.NORMALIZED, [Record(c.to_json(), c.call_id.encode()) for c in cdrs]
        )

        async def done() -> bool:
            return bool(loop.processed >= before + len(cdrs))

        await wait_for(done, timeout=20, what="billing to consume")

    async def charge_count(self) -> int:
        engine = self.app.state.cdrflow.runtime.engine
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(charges)) or 0)

    async def rated(self) -> list[dict[str, Any]]:
        bus = open_bus(self.bus_url)
        await bus.start()
        consumer = await bus.consumer([topics.RATED], f"t-{uuid.uuid4().hex}")
        out: list[dict[str, Any]] = []
        for _ in range(3):
            out += [
                json.loads(m.value) for m in await consumer.getmany(timeout_s=0.2, max_records=1000)
            ]
        await consumer.close()
        await bus.close()
        return out


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


@pytest.fixture
async def billing(db_url: str, tmp_path: Path) -> AsyncIterator[Billing]:
    db = db_url
    bus_url = f"memory://billing-{uuid.uuid4().hex}"
    app = create_service_app("billing", database_url=db, bus_url=bus_url, data_dir=tmp_path)
    async with serving(app) as client:
        yield Billing(app, client, bus_url)


async def test_worked_example_charge_explanation_and_rated(billing: Billing) -> None:
    await billing.publish(event_cdr("w1", "2018-02-28 21:57:13", "2018-02-28 22:17:53"))
    r = await billing.client.get("/v1/charges/w1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["amount"], body["currency"], body["subscriber"]) == ("0.54", "BRL", "11999998888")
    assert body["tariff"] == {"name": "default", "version": 1}
    ex = body["explanation"]
    assert [(s["band"], s["seconds"]) for s in ex["segments"]] == [
        ("standard", 167),
        ("reduced", 1073),
    ]
    assert ex["bands"][0]["cycles"] == 2
    rated = await billing.rated()
    assert [(m["call_id"], m["amount"], m["currency"], m["tariff_version"]) for m in rated] == [
        ("w1", "0.54", "BRL", 1)
    ]


async def test_same_cdr_twice_is_one_charge(billing: Billing) -> None:
    cdr = event_cdr("d1", "2024-03-05 10:00:00", "2024-03-05 10:03:00")
    await billing.publish(cdr)
    await billing.publish(cdr, cdr)
    assert await billing.charge_count() == 1
    r = await billing.client.get("/v1/charges/d1")
    assert r.json()["amount"] == "0.63"  # 0.36 + 3 x 0.09
    # cdr.rated is at-least-once: every delivery republishes the stored charge, never a new one
    assert {(m["call_id"], m["amount"]) for m in await billing.rated()} == {("d1", "0.63")}


async def test_a_batch_stores_its_calls_and_charges_together_or_not_at_all(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose charges the database refuses leaves none of its calls stored either: the
    calls and the charges are one transaction (on PostgreSQL one statement; before, each insert
    there committed on its own and the calls stayed)."""
    cdr = event_cdr("atomic-1", "2024-03-05 10:00:00", "2024-03-05 10:03:00")
    msg = Message(topics.NORMALIZED, 0, 0, None, cdr.to_json())
    service = billing.service
    price = service.price_sliced

    async def unstorable(*args: Any) -> Any:
        priced = await price(*args)
        for row in priced.charges:
            row["billed_s"] = 2**70  # no integer column takes it, on either database
        return priced

    monkeypatch.setattr(service, "price_sliced", unstorable)
    with pytest.raises((asyncpg.DataError, OverflowError, DBAPIError)):  # the drivers' overflow
        await service.handle_batch([msg])
    engine = billing.app.state.cdrflow.runtime.engine

    async def calls() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(billing_calls)) or 0)

    assert (await calls(), await billing.charge_count()) == (0, 0)
    monkeypatch.undo()
    await service.handle_batch([msg])  # redelivered: stored whole
    assert (await calls(), await billing.charge_count()) == (1, 1)


async def test_tariff_change_between_two_calls(billing: Billing) -> None:
    await billing.publish(event_cdr("t1", "2024-01-10 10:00:00", "2024-01-10 10:10:00"))
    tariff = {
        "name": "default",
        "effective_from": "2024-02-01T00:00:00Z",
        "currency": "BRL",
        "standing_charge": "0.50",
        "bands": [{"name": "flat", "start": "00:00", "end": "24:00"}],
        "destinations": [{"prefix": "", "name": "any", "prices": {"flat": "0.10"}}],
    }
    r = await billing.client.post("/v1/tariffs", json=tariff)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2
    await billing.publish(event_cdr("t2", "2024-02-10 23:00:00", "2024-02-10 23:10:00"))
    first = (await billing.client.get("/v1/charges/t1")).json()
    second = (await billing.client.get("/v1/charges/t2")).json()
    assert (first["amount"], first["tariff"]["version"]) == ("1.26", 1)  # 0.36 + 10 x 0.09
    assert (second["amount"], second["tariff"]["version"]) == ("1.50", 2)  # 0.50 + 10 x 0.10
    listing = (await billing.client.get("/v1/tariffs/default")).json()
    assert [v["version"] for v in listing["versions"]] == [1, 2]


async def test_bills(billing: Billing) -> None:
    me = "11999990000"
    await billing.publish(
        # ends in February: on February's bill
        event_cdr("b1", "2024-02-29 21:57:13", "2024-02-29 22:17:53", caller=me),
        # starts on the last day of February, ends in March: on March's bill
        event_cdr("b2", "2024-02-29 23:50:00", "2024-03-01 06:35:42", caller=me),
        # 50 h call in March: hours over 24
        event_cdr("b3", "2024-03-04 10:00:00", "2024-03-06 12:00:00", caller=me),
    )
    feb = (await billing.client.get(f"/v1/bills/{me}?period=2024-02")).json()
    assert feb["period"] == "2024-02"
    assert [c["call_id"] for c in feb["calls"]] == ["b1"]
    assert feb["calls"][0] == {
        "call_id": "b1",
        "destination": "1133334444",
        "start_date": "2024-02-29",
        "start_time": "21:57:13",
        "duration": "0h20m40s",
        "price": "R$ 0,54",
        "amount": "0.54",
    }
    assert feb["total"] == "0.54"
    mar = (await billing.client.get(f"/v1/bills/{me}?period=03/2024")).json()
    assert [c["call_id"] for c in mar["calls"]] == ["b2", "b3"]
    # b2: 35 min 42 s of standard time after 06:00 → 35 cycles: 0.36 + 3.15
    assert mar["calls"][0]["duration"] == "6h45m42s"
    assert mar["calls"][0]["price"] == "R$ 3,51"
    assert mar["calls"][1]["duration"] == "50h0m0s"
    assert mar["calls"][1]["price"] == "R$ 183,96"
    # an adjustment is listed on the bill of the month the call ended in, and counts in the total
    r = await billing.client.post(
        "/v1/charges/b2/adjustments", json={"amount": "-0.51", "reason": "goodwill credit"}
    )
    assert r.status_code == 201, r.text
    mar = (await billing.client.get(f"/v1/bills/{me}?period=2024-03")).json()
    assert [(a["call_id"], a["amount"], a["reason"]) for a in mar["adjustments"]] == [
        ("b2", "-0.51", "goodwill credit")
    ]
    assert mar["total"] == "186.96"  # 3.51 + 183.96 - 0.51
    charge = (await billing.client.get("/v1/charges/b2")).json()
    assert (charge["amount"], charge["total"]) == ("3.51", "3.00")  # the charge itself stays

    empty = await billing.client.get("/v1/bills/nobody?period=2024-03")
    assert empty.status_code == 200
    assert (empty.json()["total"], empty.json()["calls"]) == ("0.00", [])
    default = (await billing.client.get("/v1/bills/nobody")).json()
    now = datetime.now(UTC)
    last = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    assert default["period"] == last

    for period, needle in [
        (now.strftime("%Y-%m"), "is still open"),
        (f"{now.year + 1}-01", "is in the future"),
        ("2024-13", "not a month"),
    ]:
        r = await billing.client.get(f"/v1/bills/{me}", params={"period": period})
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_period"
        assert needle in r.json()["detail"]


async def test_unanswered_freeswitch_call_has_a_zero_charge_off_the_bill(billing: Billing) -> None:
    cdr = CDR(
        call_id="fs-missed",
        source="freeswitch",
        caller_number="1000",
        callee_number="5511988887777",
        account="acme",
        start_time=at("2024-03-05 10:00:00"),
        end_time=at("2024-03-05 10:00:25"),
        duration_s=25,
        billsec_s=0,
        disposition="no_answer",  # type: ignore[arg-type]
    )
    answered = cdr.model_copy(
        update={
            "call_id": "fs-ok",
            "answer_time": at("2024-03-05 10:00:05"),
            "end_time": at("2024-03-05 10:02:10"),
            "billsec_s": 125,
            "disposition": Disposition.ANSWERED,
        }
    )
    await billing.publish(cdr, answered)
    missed = (await billing.client.get("/v1/charges/fs-missed")).json()
    assert (missed["outcome"], missed["amount"]) == ("not_answered", "0.00")
    assert "not answered" in missed["explanation"]["reason"]
    ok = (await billing.client.get("/v1/charges/fs-ok")).json()
    assert (ok["subscriber"], ok["amount"]) == ("acme", "0.54")  # account wins; 125 s = 2 cycles
    bill = (await billing.client.get("/v1/bills/acme?period=2024-03")).json()
    assert [c["call_id"] for c in bill["calls"]] == ["fs-ok"]


async def test_rerate_prices_only_the_unpriced(billing: Billing) -> None:
    intl = {
        "name": "intl",
        "effective_from": "2020-01-01T00:00:00Z",
        "bands": [{"name": "all", "start": "00:00", "end": "00:00"}],
        "destinations": [{"prefix": "1", "name": "USA", "prices": {"all": "1.00"}}],
    }
    assert (await billing.client.post("/v1/tariffs", json=intl)).status_code == 201
    r = await billing.client.put("/v1/tariff-assignments/sub-x", json={"tariff": "intl"})
    assert r.status_code == 200, r.text
    usa = event_cdr("r1", "2024-03-05 10:00:00", "2024-03-05 10:02:00", callee="12125550000")
    uk = event_cdr("r2", "2024-03-05 11:00:00", "2024-03-05 11:02:00", callee="442071234567")
    usa = usa.model_copy(update={"account": "sub-x"})
    uk = uk.model_copy(update={"account": "sub-x"})
    await billing.publish(usa, uk)
    assert (await billing.client.get("/v1/charges/r1")).json()["amount"] == "2.00"
    r = await billing.client.get("/v1/charges/r2")
    assert r.status_code == 404
    assert "no destination of tariff intl v1" in r.json()["detail"]
    r = await billing.client.post("/v1/charges/r2/adjustments", json={"amount": "1", "reason": "x"})
    assert r.status_code == 409

    intl2 = {
        **intl,
        "destinations": [*intl["destinations"], {"prefix": "", "prices": {"all": "3"}}],
    }
    intl2["destinations"][0] = {"prefix": "1", "name": "USA", "prices": {"all": "9.00"}}
    assert (await billing.client.post("/v1/tariffs", json=intl2)).status_code == 201
    before = (await billing.client.get("/v1/charges/r1")).json()
    result = await billing.service.rerate(at("2024-03-01 00:00:00"), at("2024-04-01 00:00:00"))
    assert result == {"examined": 1, "priced": 1, "still_unpriced": 0}
    uk_charge = (await billing.client.get("/v1/charges/r2")).json()
    assert (uk_charge["amount"], uk_charge["tariff"]["version"]) == ("6.00", 2)
    assert (await billing.client.get("/v1/charges/r1")).json() == before  # never re-priced
    again = await billing.service.rerate(at("2024-03-01 00:00:00"), at("2024-04-01 00:00:00"))
    assert again["examined"] == 0


async def test_tariff_validation_answers_4xx_with_a_reason(billing: Billing) -> None:
    base: dict[str, Any] = {
        "name": "bad",
        "bands": [{"name": "day", "start": "06:00", "end": "22:00"}],
        "destinations": [{"prefix": "", "prices": {"day": "0.1"}}],
    }
    r = await billing.client.post("/v1/tariffs", json=base)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_tariff"
    assert "no band covers" in r.json()["detail"]
    ok_bands = [{"name": "day", "start": "00:00", "end": "24:00"}]
    for change, needle in [
        ({"increments": {"first_s": 0}}, "greater than 0"),
        ({"destinations": [{"prices": {"day": "-1"}}]}, "negative"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
    ]:
        r = await billing.client.post("/v1/tariffs", json={**base, "bands": ok_bands, **change})
        assert r.status_code == 422, r.text
        assert needle in r.json()["detail"]
    assert (await billing.client.get("/v1/tariffs/bad")).status_code == 404
    listing = (await billing.client.get("/v1/tariffs")).json()
    assert [t["name"] for t in listing["items"]] == ["default"]
    r = await billing.client.put("/v1/tariff-assignments/x", json={"tariff": "nope"})
    assert r.status_code == 404


async def test_charges_are_immutable_in_the_database(billing: Billing) -> None:
    await billing.publish(event_cdr("i1", "2024-03-05 10:00:00", "2024-03-05 10:03:00"))
    engine = billing.app.state.cdrflow.runtime.engine
    for sql in ("UPDATE charges SET amount = '0'", "DELETE FROM charges"):
        with pytest.raises(DBAPIError, match="immutable"):
            async with engine.begin() as conn:
                await conn.execute(text(sql))
    assert (await billing.client.get("/v1/charges/i1")).json()["amount"] == "0.63"


async def test_rerate_command(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}"
    bus_url = f"memory://billing-{uuid.uuid4().hex}"
    app = create_service_app("billing", database_url=db, bus_url=bus_url, data_dir=tmp_path)
    async with serving(app) as client:
        b = Billing(app, client, bus_url)
        await client.put("/v1/tariff-assignments/sub-y", json={"tariff": "default"})
        cdr = event_cdr("cli1", "2024-03-05 10:00:00", "2024-03-05 10:01:00")
        await b.publish(cdr.model_copy(update={"end_time": None, "duration_s": None}))
    env = {**os.environ, "CDRFLOW_DATABASE_URL": db, "CDRFLOW_BUS_URL": "memory://"}
    cmd = [sys.executable, "-m", "cdrflow", "rerate", "--since", "2024-03-01T00:00:00Z"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, "--until", "2024-04-01T00:00:00Z", env=env, stdout=subprocess.PIPE, cwd=ROOT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    # no end time: still unpriced, and said so
    assert json.loads(out)["still_unpriced"] == 1
    bad = await asyncio.create_subprocess_exec(
        *cmd, "--until", "tomorrow", env=env, stderr=subprocess.PIPE, cwd=ROOT
    )
    _, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode != 0
    assert b"--until='tomorrow'" in err


async def test_a_tariff_committed_after_a_newer_one_is_still_loaded(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    """Two tariffs created at once (two replicas, or two requests while a big one inserts its
    destinations): PostgreSQL hands out ids in insert order but they become visible in commit
    order. The refresh only looked for ids above the highest one loaded, so the tariff with the
    lower id, committed second, was never loaded: its calls went unpriced (or a new version of
    an existing tariff was ignored for good) and assigning it answered 404."""
    from sqlalchemy import insert

    from cdr_billing.models import tariff_destinations, tariffs
    from cdr_billing.repository import _dest_rows, _tariff_row
    from cdr_billing.tariff import default_tariff

    bus_url = f"memory://billing-{uuid.uuid4().hex}"
    app = create_service_app(
        "billing", database_url=fresh_pg_url, bus_url=bus_url, data_dir=tmp_path
    )
    async with serving(app) as client:
        engine = app.state.cdrflow.runtime.engine
        slow = default_tariff("UTC")
        slow.name, slow.version = "slow", 1
        async with engine.begin() as conn:  # the other writer: its id is taken first
            tid = await conn.scalar(
                insert(tariffs).values(_tariff_row(slow, datetime.now(UTC))).returning(tariffs.c.id)
            )
            await conn.execute(insert(tariff_destinations), _dest_rows(tid, slow))
            fast = {
                "name": "fast",
                "bands": [{"name": "flat", "start": "00:00", "end": "24:00"}],
                "destinations": [{"prefix": "", "name": "any", "prices": {"flat": "0.10"}}],
            }
            r = await client.post("/v1/tariffs", json=fast)  # a higher id, committed first
            assert r.status_code == 201, r.text
        listing = (await client.get("/v1/tariffs")).json()
        assert [t["name"] for t in listing["items"]] == ["default", "fast", "slow"]
        r = await client.put("/v1/tariff-assignments/11999998888", json={"tariff": "slow"})
        assert r.status_code == 200, r.text


async def test_pricing_with_a_yield_before_every_call_prices_the_same(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer prices a batch with ``price_sliced`` (the event loop given back now and
    then, cdrkit.pacing): the same charges and unpriced reasons as ``price``."""
    import cdrkit.pacing
    from cdr_billing.service import facts

    service = billing.service
    await service.refresh_tariffs()
    calls = [
        facts(event_cdr(f"s{i}", "2024-03-05 10:00:00", f"2024-03-05 10:{i % 60:02d}:07"))
        for i in range(30)
    ]
    start = at("2024-03-05 10:00:00")
    calls.append(
        facts(CDR(call_id="no-end", source="call.event", caller_number="1", start_time=start))
    )
    calls.append(facts(CDR(call_id="nobody", source="call.event", start_time=start)))
    now = datetime(2024, 4, 1, tzinfo=UTC)
    monkeypatch.setattr(cdrkit.pacing, "SLICE_S", 0.0)
    sliced = await service.price_sliced(calls, {}, now)
    whole = service.price(calls, {}, now)
    assert sliced == whole
    assert len(whole.charges) == 31  # the call without an end: a zero charge
    assert set(whole.unpriced) == {"nobody"}


async def test_a_slow_batch_gives_the_event_loop_back(
    billing: Billing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pricing made to take 5 ms a call: a batch of 40 would hold the loop for 200 ms; it gives
    it back every few ms instead (in ``cdrflow run`` the posts are answered on that loop)."""
    import time

    service = billing.service
    slow_rate = service.rate

    def rate(*args: Any) -> Any:
        time.sleep(0.005)
        return slow_rate(*args)

    monkeypatch.setattr(service, "rate", rate)
    # A full collection of what earlier tests left (~300 ms seen) would hold the loop by itself.
    gc.collect()
    async with loop_hold() as held:
        await billing.publish(
            *(
                event_cdr(f"slow{i}", "2024-03-05 10:00:00", "2024-03-05 10:03:00")
                for i in range(40)
            )
        )
    assert await billing.charge_count() == 40
    assert held.longest_s < 0.1, f"the loop was held for {held.longest_s * 1000:.0f} ms"
