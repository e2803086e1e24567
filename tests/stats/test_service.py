"""Stats end to end on PostgreSQL and on SQLite (the all-in-one's database): the consumer, the
database and the HTTP API."""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdr_stats.call_fields import BUCKET_S
from cdrkit.bus import Message
from cdrmodel import topics
from tests.e2e.conftest import serving
from tests.stats.conftest import (
    make_cdr,
    memory_bus,
    publish,
    real_cdrs,
    recent_bucket,
    stats_app,
    wait_processed,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test on PostgreSQL and on SQLite: their consumer statements differ."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/stats.db"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


async def _buckets(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/buckets", params=params)
    assert r.status_code == 200, r.text
    buckets: list[dict[str, Any]] = r.json()["buckets"]
    return buckets


async def test_boundaries_out_of_order_late_and_real_cdrs(db_url: str, tmp_path: Path) -> None:
    app = stats_app(db_url, memory_bus(), tmp_path)
    b = recent_bucket(3)
    async with serving(app) as client:
        # newest first, the one ending exactly on the boundary, then one an hour late
        batch = [
            make_cdr(b + BUCKET_S, call_id="on-next-edge"),
            make_cdr(b + BUCKET_S - 1, call_id="last-second"),
            make_cdr(b, call_id="on-edge"),
            make_cdr(b - 1, call_id="before-edge"),
        ]
        await publish(app, batch)
        await wait_processed(app, 4)
        await publish(app, [make_cdr(b - 10 * BUCKET_S + 5, call_id="late", billsec=0)])
        # the real FreeSWITCH CDRs, moved into bucket b (their end times 2009-2018 are past the
        # retention window, so they would be counted as expired)
        real = []
        for cdr in real_cdrs().values():
            assert cdr.end_time is not None
            shift = (b + 100) - int(cdr.end_time.timestamp())
            real.append(
                cdr.model_copy(
                    update={
                        k: getattr(cdr, k) + timedelta(seconds=shift)
                        for k in ("start_time", "answer_time", "end_time")
                        if getattr(cdr, k) is not None
                    }
                )
            )
        await publish(app, real)
        await wait_processed(app, 9)
        rows = await _buckets(client, since=b - 11 * BUCKET_S, until=b + 2 * BUCKET_S)
        by_start = {r["start"]: r["metrics"] for r in rows}
        assert sorted(by_start) == [b - 10 * BUCKET_S, b - BUCKET_S, b, b + BUCKET_S]
        assert by_start[b - BUCKET_S]["attempts"] == 1
        assert by_start[b]["attempts"] == 2 + 4
        assert by_start[b + BUCKET_S]["attempts"] == 1
        assert by_start[b - 10 * BUCKET_S]["zero_duration"] == 1
        real_b = by_start[b]
        assert real_b["sip_codes"] == {"200": 4, "487": 1}
        assert real_b["hangup_causes"]["ORIGINATOR_CANCEL"] == 1
        per_carrier = await _buckets(client, since=b, until=b + 1, group_by="carrier")
        carriers = {r["group"]["carrier"]: r["metrics"]["attempts"] for r in per_carrier}
        assert carriers == {"carrier-a": 2, "carlos": 1, "openbts": 2, "internal": 1}
        # ISO 8601 times work the same
        iso = await _buckets(
            client,
            since=datetime.fromtimestamp(b - BUCKET_S, UTC).isoformat(),
            until=datetime.fromtimestamp(b + 1, UTC).isoformat().replace("+00:00", "Z"),
            metric="attempts",
        )
        assert iso[-1] == {"start": b, "end": b + BUCKET_S, "group": {}, "metrics": {"attempts": 6}}


async def test_bad_parameters_are_clear_4xx(db_url: str, tmp_path: Path) -> None:
    app = stats_app(db_url, memory_bus(), tmp_path)
    async with serving(app) as client:
        for params, word in [
            ({"since": "yesterday"}, "since"),
            ({"since": "2024-01-01T00:00:00"}, "timezone"),
            ({"since": "200", "until": "100"}, "before"),
            ({"group_by": "callee"}, "group_by"),
            ({"metric": "attempts,bogus"}, "bogus"),
            ({"since": "0", "until": "99999999"}, "31 days"),
        ]:
            r = await client.get("/v1/buckets", params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["error"] == "invalid_input"
            assert word in r.json()["detail"]
        r = await client.delete("/v1/alerts", params={"before": "soon"})
        assert r.status_code == 400


async def test_redelivery_restart_and_alerts(db_url: str, tmp_path: Path) -> None:
    """Counted once however often delivered; a restarted instance serves the same buckets and
    goes on adding to them; a fraud alert is stored once and can be deleted."""
    bus = memory_bus()
    b = recent_bucket(1)
    cdrs = [make_cdr(b + i, billsec=i % 7) for i in range(300)]
    fraud = make_cdr(b + 5, callee="15195551234", billsec=40, carrier="carrier-f")
    app = stats_app(db_url, bus, tmp_path)
    async with serving(app) as client:
        await publish(app, [*cdrs, fraud])
        await publish(app, [*cdrs[:100], fraud])  # redelivered
        await wait_processed(app, 402)
        before = await _buckets(client, since=b, until=b + 1)
        assert before[0]["metrics"]["attempts"] == 301
        alerts = (await client.get("/v1/alerts")).json()["items"]
        assert [(a["kind"], a["labels"]["prefix"]) for a in alerts] == [("fraud_prefix", "1519555")]
    # a new instance on the same database (a restart): nothing lost, redelivery still deduped
    app2 = stats_app(db_url, memory_bus(), tmp_path)
    async with serving(app2) as client:
        assert await _buckets(client, since=b, until=b + 1) == before
        await publish(app2, [*cdrs[200:], make_cdr(b + 9, call_id="after-restart", billsec=0)])
        await wait_processed(app2, 101)
        after = (await _buckets(client, since=b, until=b + 1))[0]["metrics"]
        assert after["attempts"] == 302
        assert after["zero_duration"] == before[0]["metrics"]["zero_duration"] + 1
        assert len((await client.get("/v1/alerts")).json()["items"]) == 1
        r = await client.delete("/v1/alerts", params={"before": "2000-01-01T00:00:00Z"})
        assert r.json() == {"deleted": 0}
        r = await client.delete("/v1/alerts")
        assert r.json() == {"deleted": 1}
        assert (await client.get("/v1/alerts")).json()["items"] == []


async def test_two_instances_merge(db_url: str, tmp_path: Path) -> None:
    """Two instances (each its own partition set: here its own bus) write additive deltas into
    one database; either serves the merged buckets; a call both see is counted once."""
    b = recent_bucket(2)
    app_a = stats_app(db_url, memory_bus(), tmp_path)
    app_b = stats_app(db_url, memory_bus(), tmp_path)
    shared = make_cdr(b + 1, call_id="both-saw-it", carrier="c1", billsec=100)
    a_calls = [make_cdr(b + i, carrier="c1", billsec=10 + i) for i in range(120)]
    b_calls = [make_cdr(b + i, carrier=f"c{1 + i % 2}", billsec=0) for i in range(80)]
    async with serving(app_a) as ca, serving(app_b) as cb:
        for i in range(0, 120, 30):  # interleaved batches: both write the same rows
            await publish(app_a, [*a_calls[i : i + 30], shared])
            await publish(app_b, [*b_calls[i // 30 * 20 : i // 30 * 20 + 20], shared])
        await wait_processed(app_a, 124)
        await wait_processed(app_b, 84)
        for client in (ca, cb):
            rows = await _buckets(client, since=b, until=b + 1, group_by="carrier")
            got = {r["group"]["carrier"]: r["metrics"] for r in rows}
            assert got["c1"]["attempts"] == 120 + 40 + 1
            assert got["c2"]["attempts"] == 40
            assert got["c1"]["answered"] == 121
            assert got["c1"]["billsec"]["max"] == 129
            assert got["c1"]["billsec"]["min"] == 0
            assert got["c1"]["billsec"]["sum"] == sum(range(10, 130)) + 100
            total = (await _buckets(client, since=b, until=b + 1))[0]["metrics"]
            assert total["attempts"] == 201


async def test_threshold_rule_alerts_once_per_bucket(db_url: str, tmp_path: Path) -> None:
    app = stats_app(db_url, memory_bus(), tmp_path)
    b = recent_bucket(1)
    async with serving(app) as client:
        for i in range(4):  # four batches of failing calls on one carrier, one bucket
            await publish(
                app,
                [
                    make_cdr(b + i * 10 + j, carrier="dying", billsec=0, sip_code=503)
                    for j in range(10)
                ],
            )
            await wait_processed(app, 10 * (i + 1))
        items = (await client.get("/v1/alerts", params={"kind": "rule"})).json()["items"]
        rules = sorted(a["labels"]["rule"] for a in items)
        assert rules == ["low_asr", "sip_5xx", "zero_duration_burst"]
        assert all(a["labels"]["carrier"] == "dying" and a["bucket"] == b for a in items)
        unexpected = (await client.get("/v1/alerts", params={"kind": "unexpected_sip_code"})).json()
        assert len(unexpected["items"]) == 1  # once per bucket and carrier, not per call


async def test_entry_point_plugin_and_reload_keep_data(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "longcalls-1.0.dist-info").mkdir(parents=True)
    (site / "longcalls-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: longcalls\nVersion: 1.0\n"
    )
    (site / "longcalls-1.0.dist-info" / "entry_points.txt").write_text(
        "[cdrflow.stats_plugins]\nlongcalls = stats_longcalls_test:plugin\n"
    )
    (site / "stats_longcalls_test.py").write_text(
        textwrap.dedent(
            """
            def plugin(call, ctx):
                if (call.billsec_s or 0) >= 60:
                    ctx.increment("long_calls")
                    ctx.increment("long_seconds", call.billsec_s)
            """
        )
    )
    b = recent_bucket(1)
    app = stats_app(db_url, memory_bus(), tmp_path)
    async with serving(app) as client:
        await publish(app, [make_cdr(b + i, billsec=50 + i) for i in range(20)])
        await wait_processed(app, 20)
        first = (await _buckets(client, since=b, until=b + 1))[0]["metrics"]
        assert "long_calls" not in first["counters"]
        monkeypatch.syspath_prepend(str(site))
        r = await client.post("/v1/plugins/reload")
        assert r.status_code == 200
        assert "longcalls" in r.json()["plugins"]
        await publish(app, [make_cdr(b + 30 + i, billsec=50 + i) for i in range(20)])
        await wait_processed(app, 40)
        after = (await _buckets(client, since=b, until=b + 1))[0]["metrics"]
        assert after["attempts"] == 40  # reload kept the data
        assert after["counters"]["long_calls"] == 10
        assert after["counters"]["long_seconds"] == sum(range(60, 70))
    sys.modules.pop("stats_longcalls_test", None)


async def test_prune_drops_buckets_past_the_retention(db_url: str, tmp_path: Path) -> None:
    app = stats_app(db_url, memory_bus(), tmp_path, retention_hours=1)
    b = recent_bucket(0)
    async with serving(app) as client:
        await publish(app, [make_cdr(b - 5 * BUCKET_S), make_cdr(b - 20 * BUCKET_S)])
        await wait_processed(app, 2)
        rows = await _buckets(client, since=b - 30 * BUCKET_S, until=b + 1)
        assert [r["start"] for r in rows] == [b - 5 * BUCKET_S]  # the older one expired
        service = app.state.cdrflow.components["stats"].service
        assert await service.prune(now=b + 2 * 3600) > 0
        assert await _buckets(client, since=b - 30 * BUCKET_S, until=b + 1) == []


async def test_a_failed_batch_leaves_its_calls_unseen(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call ids a batch marks as seen and the counts it adds are one transaction: when the
    counts cannot be stored, the calls are not marked seen either, so the redelivered batch
    counts them (on PostgreSQL each statement used to commit on its own: the redelivery found
    the calls seen and counted them as duplicates, never as calls)."""
    app = stats_app(db_url, memory_bus(), tmp_path)
    b = recent_bucket(2)
    msg = Message(topics.NORMALIZED, 0, 0, None, make_cdr(b + 10, call_id="once").to_json())
    async with serving(app) as client:
        service = app.state.cdrflow.components["stats"].service

        async def refused(*_args: Any) -> Any:
            raise RuntimeError("the database refused the counts")

        monkeypatch.setattr(service.repo, "add_deltas", refused)
        with pytest.raises(RuntimeError):
            await service.handle_batch([msg])
        monkeypatch.undo()
        await service.handle_batch([msg])  # redelivered
        rows = await _buckets(client, since=b, until=b + BUCKET_S)
        assert [r["metrics"]["attempts"] for r in rows] == [1]
