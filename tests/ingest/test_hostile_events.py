"""Hostile ``POST /v1/events`` bodies are a 400 with the error shape, never a 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cdrmodel.call_events import InvalidEvent, parse_event
from tests.ingest.conftest import ingest_app

START = (
    '{"id": %s, "type": "start", "timestamp": "%s", "call_id": 5, '
    '"source": "1199999999", "destination": "1199999998"}'
)


async def test_hostile_event_bodies_answer_400_not_500(tmp_path: Path) -> None:
    app = ingest_app(tmp_path)
    async with (
        app.router.lifespan_context(app),
        # A 500 is answered, as in production, instead of raised into the test.
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://ingest.test",
        ) as client,
    ):
        for body, error in [
            # In UTC, a day before year 1 / after year 9999: datetime overflows.
            (START % ("1", "0001-01-01T00:00:00+14:00"), "bad_timestamp"),
            (START % ("1", "9999-12-31T23:59:59-14:00"), "bad_timestamp"),
            ("[" * 100_000, "not_well_formed"),  # json.loads: RecursionError
            # A lone surrogate as the id cannot be echoed in a UTF-8 answer.
            (START % ('"\\ud800"', "2024-01-01T00:00:00Z"), "bad_id"),
        ]:
            answer = await client.post(
                "/v1/events", content=body, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 400, (body[:80], answer.status_code, answer.text)
            assert answer.json()["error"] == error, answer.text
            assert answer.json()["detail"]


def test_an_out_of_range_instant_is_an_invalid_event() -> None:
    record = {
        "id": 1,
        "type": "end",
        "timestamp": "0001-01-01T00:00:00+01:00",
        "call_id": 5,
    }
    with pytest.raises(InvalidEvent) as caught:
        parse_event(record)
    assert caught.value.code == "bad_timestamp"
