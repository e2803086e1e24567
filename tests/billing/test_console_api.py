"""The billing API the console needs: the running bill, charge lists, assignment lookup, on-net
calls left unpriced, and the tariff examples of the docs (accepted as they are written)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.billing.test_service import ROOT, Billing, billing, db_url, event_cdr

__all__ = ["billing", "db_url"]  # the fixtures, shared with test_service


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


async def test_current_month_bill_is_provisional(billing: Billing) -> None:
    me = "11955550001"
    now = datetime.now(UTC).replace(microsecond=0)
    month_start = now.replace(day=1, hour=0, minute=0, second=0)
    # one call earlier this month (at most 3 minutes after the month began, 2 min long)...
    begin = max(month_start, now - timedelta(minutes=10))
    await billing.publish(
        event_cdr("cur1", iso(begin), iso(begin + timedelta(minutes=2)), caller=me),
        # ...and one last month, which is not on the running bill
        event_cdr(
            "old1",
            iso(month_start - timedelta(hours=2)),
            iso(month_start - timedelta(hours=2) + timedelta(minutes=5)),
            caller=me,
        ),
    )
    r = await billing.client.get(f"/v1/bills/{me}", params={"period": "current"})
    assert r.status_code == 200, r.text
    bill = r.json()
    assert bill["provisional"] is True
    assert bill["period"] == now.strftime("%Y-%m")
    assert datetime.fromisoformat(bill["as_of"]) >= now
    assert [c["call_id"] for c in bill["calls"]] == ["cur1"]
    charge = (await billing.client.get("/v1/charges/cur1")).json()
    assert bill["total"] == charge["amount"]
    closed = (await billing.client.get(f"/v1/bills/{me}")).json()
    assert closed["provisional"] is False
    assert "as_of" not in closed


async def test_charges_keyset_pages_cover_each_charge_once(billing: Billing) -> None:
    me = "11955550002"
    cdrs = [
        event_cdr(
            f"k{i:02d}",
            f"2024-05-0{1 + i % 3} 10:{i:02d}:00",
            f"2024-05-0{1 + i % 3} 10:{i:02d}:45",
            caller=me,
        )
        for i in range(7)
    ]
    await billing.publish(*cdrs, event_cdr("other", "2024-05-02 10:00:00", "2024-05-02 10:01:00"))
    seen: list[str] = []
    ends: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"subscriber": me, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = await billing.client.get("/v1/charges", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        seen += [c["call_id"] for c in body["items"]]
        ends += [c["end_time"] for c in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert sorted(seen) == [f"k{i:02d}" for i in range(7)]
    assert ends == sorted(ends, reverse=True)
    # the time window is on the end time
    r = await billing.client.get(
        "/v1/charges",
        params={"subscriber": me, "since": "2024-05-02T00:00:00Z", "until": "2024-05-03T00:00:00Z"},
    )
    assert sorted(c["call_id"] for c in r.json()["items"]) == ["k01", "k04"]
    for bad in ({"subscriber": me, "cursor": "garbage"}, {"subscriber": me, "since": "soon"}, {}):
        r = await billing.client.get("/v1/charges", params=bad)
        assert r.status_code in (400, 422), r.text
        assert "error" in r.json()


async def test_tariff_assignment_can_be_read(billing: Billing) -> None:
    r = await billing.client.get("/v1/tariff-assignments/11955550003")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "subscriber": "11955550003",
        "tariff": "default",
        "assigned": False,
        "assigned_at": None,
    }
    body = json.loads((ROOT / "examples/tariffs/flat-usd.json").read_text())
    assert (await billing.client.post("/v1/tariffs", json=body)).status_code == 201
    r = await billing.client.put("/v1/tariff-assignments/11955550003", json={"tariff": "flat-usd"})
    assert r.status_code == 200, r.text
    got = (await billing.client.get("/v1/tariff-assignments/11955550003")).json()
    assert (got["tariff"], got["assigned"]) == ("flat-usd", True)
    assert got["assigned_at"] is not None


async def test_extension_call_is_free_with_its_reason_and_off_the_bill(billing: Billing) -> None:
    me = "1001"
    await billing.publish(
        event_cdr("ext1", "2024-06-03 10:00:00", "2024-06-03 10:04:00", caller=me, callee="1003"),
        event_cdr("pstn1", "2024-06-03 11:00:00", "2024-06-03 11:02:00", caller=me),
    )
    charge = (await billing.client.get("/v1/charges/ext1")).json()
    assert (charge["outcome"], charge["amount"]) == ("free", "0.00")
    assert "1003 is in the extension range 1000-9999" in charge["explanation"]["reason"]
    listed = (await billing.client.get("/v1/charges", params={"subscriber": me})).json()["items"]
    by_id = {c["call_id"]: c for c in listed}
    assert by_id["ext1"]["outcome"] == "free"
    assert "extension range" in by_id["ext1"]["reason"]
    assert by_id["pstn1"]["amount"] == "0.54"
    bill = (await billing.client.get(f"/v1/bills/{me}", params={"period": "2024-06"})).json()
    assert [c["call_id"] for c in bill["calls"]] == ["pstn1"]
    assert bill["total"] == "0.54"


async def test_tariff_examples_are_accepted_as_written(billing: Billing) -> None:
    examples = sorted((ROOT / "examples/tariffs").glob("*.json"))
    assert len(examples) >= 2
    docs = (ROOT / "docs/billing.md").read_text()
    for path in examples:  # the docs show the tested files, not a copy that drifts
        assert f"```json\n{path.read_text().rstrip()}\n```" in docs, path.name
    for path in examples:
        body = json.loads(path.read_text())
        r = await billing.client.post("/v1/tariffs", json=body)
        assert r.status_code == 201, (path.name, r.text)
        summary = r.json()
        assert summary["name"] == body["name"]
        assert summary["extension_ranges"] == body.get("extension_ranges", [])
    business = json.loads((ROOT / "examples/tariffs/business-brl.json").read_text())
    await billing.client.put("/v1/tariff-assignments/5511900001", json={"tariff": "business"})
    # Monday 03:00 São Paulo (06:00Z) is in the weekday night band (offpeak), Saturday 03:00
    # in the weekend band: "Mon-Fri 18:00-08:00" means those days' clock hours.
    await billing.publish(
        event_cdr(
            "mon3",
            "2024-03-11 06:00:00",
            "2024-03-11 06:01:00",
            caller="5511900001",
            callee="5521912345678",
        ),
        event_cdr(
            "sat3",
            "2024-03-16 06:00:00",
            "2024-03-16 06:01:00",
            caller="5511900001",
            callee="5521912345678",
        ),
        event_cdr(
            "tollfree",
            "2024-03-11 12:00:00",
            "2024-03-11 12:09:00",
            caller="5511900001",
            callee="08007771234",
        ),
    )
    mon = (await billing.client.get("/v1/charges/mon3")).json()
    sat = (await billing.client.get("/v1/charges/sat3")).json()
    assert [b["band"] for b in mon["explanation"]["bands"]] == ["offpeak"]
    assert [b["band"] for b in sat["explanation"]["bands"]] == ["weekend"]
    # 60 s at 0.15 + 0.10 standing; 60 s at 0.10 + 0.10
    assert (mon["amount"], sat["amount"]) == ("0.25", "0.20")
    free = (await billing.client.get("/v1/charges/tollfree")).json()
    assert free["outcome"] == "free"
    assert "free prefix 0800" in free["explanation"]["reason"]
    assert business["free_prefixes"][0] == "0800"
