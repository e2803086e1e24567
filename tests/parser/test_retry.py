"""Operator retries of dead letters (issue 12, finding 3).

About 450 ``POST /v1/dead-letters/{id}/retry`` of one unmappable letter used to trip the
dead-letter flood stop: each retry came back as one more dead letter in the flood window, and the
parser stopped. Now the flood window counts only messages read from the topic, never a retry; a
retry is idempotent while it is pending (409, nothing re-published) and rate-limited (429).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cdrflow.mock import generate_cdr
from cdrflow.platform import create_service_app
from cdrkit.bus import Record
from cdrmodel import Origin, PayloadKind, RawEnvelope, topics
from cdrmodel.envelope import sha256_hex
from tests.e2e.conftest import serving, wait_for


def _envelope(payload: str, call_id: str | None = None) -> RawEnvelope:
    return RawEnvelope(
        id=uuid.uuid4().hex,
        kind=PayloadKind.FREESWITCH_XML,
        received_at=datetime.now(UTC),
        source=Origin(remote_addr="127.0.0.1"),
        content_type="application/xml",
        call_id=call_id,
        payload=payload,
        sha256=sha256_hex(payload),
    )


def _app(tmp_path: Path, **settings: Any) -> Any:
    return create_service_app(
        "parser",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'retry.db'}",
        bus_url=f"memory://{uuid.uuid4().hex}",
        **settings,
    )


async def _one_letter(client: httpx.AsyncClient, app: Any, payload: str) -> int:
    bus = app.state.cdrflow.runtime.bus
    await bus.producer.send_many(topics.RAW, [Record(value=_envelope(payload).to_json())])

    async def arrived() -> bool:
        return len((await client.get("/v1/dead-letters")).json()["items"]) == 1

    await wait_for(arrived, what="the dead letter", timeout=15)
    return int((await client.get("/v1/dead-letters")).json()["items"][0]["id"])


async def test_retrying_one_letter_many_times_never_trips_the_flood_stop(tmp_path: Path) -> None:
    # A window of 20 at 90 %: before, the 18th failed retry stopped the parser.
    app = _app(tmp_path, flood_window=20, flood_ratio=0.9, retry_pending_s=0, retry_burst=1000)
    async with serving(app) as client:
        letter = await _one_letter(client, app, "<cdr><variables><uuid>x</uuid></variables></cdr>")
        for _ in range(60):
            assert (await client.post(f"/v1/dead-letters/{letter}/retry")).status_code == 200

        async def all_failed_again() -> bool:
            row = (await client.get(f"/v1/dead-letters/{letter}")).json()
            return row["retry_count"] == 60 and row["last_failed_at"] >= row["retried_at"]

        await wait_for(all_failed_again, what="60 retries processed", timeout=30)
        assert (await client.get("/readyz/consumers")).status_code == 200
        # The flood stop itself still works for what is read from the topic.
        bus = app.state.cdrflow.runtime.bus
        bad = [Record(value=_envelope("<cdr/>").to_json()) for _ in range(20)]
        await bus.producer.send_many(topics.RAW, bad)

        async def stopped() -> bool:
            return (await client.get("/readyz/consumers")).status_code == 503

        await wait_for(stopped, what="the flood stop on 20 bad messages", timeout=15)


async def test_a_pending_retry_is_not_repeated(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with serving(app) as client:
        repo = app.state.cdrflow.components["parser"].service.repo
        call_id, xml = generate_cdr(random.Random(3))
        good = _envelope(xml, call_id)  # dead-lettered by a mapper bug since fixed
        await repo.store_batch(
            [],
            [],
            [
                {
                    "dedup_key": f"map:{good.id}",
                    "envelope_id": good.id,
                    "call_id": call_id,
                    "stage": "map",
                    "error": "mapper_error",
                    "reason": "KeyError (fixed since)",
                    "envelope": good.model_dump(mode="json", exclude_none=True),
                    "created_at": datetime.now(UTC) - timedelta(hours=1),
                    "last_failed_at": datetime.now(UTC) - timedelta(hours=1),
                }
            ],
        )
        letter = (await client.get("/v1/dead-letters")).json()["items"][0]["id"]
        answers = await asyncio.gather(
            *(client.post(f"/v1/dead-letters/{letter}/retry") for _ in range(10))
        )
        assert sorted(a.status_code for a in answers) == [200] + [409] * 9
        conflict = next(a for a in answers if a.status_code == 409).json()
        assert conflict["error"] == "retry_pending"
        assert "PARSER_RETRY_PENDING_S" in conflict["detail"]
        row = (await client.get(f"/v1/dead-letters/{letter}")).json()
        assert row["retry_count"] == 1

        async def stored() -> bool:
            return (await client.get(f"/v1/cdrs/{call_id}")).status_code == 200

        await wait_for(stored, what="the retried CDR", timeout=15)
        # Exactly one copy went to the bus.
        bus = app.state.cdrflow.runtime.bus
        consumer = await bus.consumer([topics.RAW], f"check-{uuid.uuid4().hex}")
        sent = await consumer.getmany(timeout_s=0.5, max_records=100)
        await consumer.close()
        assert len(sent) == 1
        assert dict(sent[0].headers) == {"cdrflow-retry": str(letter).encode()}


async def test_retries_are_rate_limited(tmp_path: Path) -> None:
    app = _app(tmp_path, retry_pending_s=0, retry_rate_per_s=0.5, retry_burst=3)
    async with serving(app) as client:
        letter = await _one_letter(client, app, "<cdr><variables><uuid>y</uuid></variables></cdr>")
        answers = [await client.post(f"/v1/dead-letters/{letter}/retry") for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        assert answers[3].json()["error"] == "rate_limited"
        assert int(answers[3].headers["retry-after"]) in (1, 2)
        row = (await client.get(f"/v1/dead-letters/{letter}")).json()
        assert row["retry_count"] == 3
