from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cdr_ingest.app import create_app
from cdr_ingest.settings import IngestSettings
from cdrkit.settings import load
from cdrmodel import RawEnvelope, topics
from tests.e2e.conftest import serving

INCOMING = "freeswitch/freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml"
ERROR_CALL = "freeswitch/freeswitch_xml_cdr_ccm_client_error-call-cdr.xml"
TINY_2009 = "freeswitch/freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml"
JSON_CDR = "freeswitch/freeswitch_json_cdr_cgrates_answered.json"
ALL_CDRS = (INCOMING, ERROR_CALL, TINY_2009, JSON_CDR)

IngestFactory = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


def ingest_app(data_dir: Path, **overrides: object) -> FastAPI:
    """The ingest service alone, on its own in-process bus.

    The duplicate index is off unless a test turns it on: these tests post the same document
    several times on purpose and count what reaches the bus (test_dedupe.py tests the index)."""
    overrides = {"dedupe_window": 0, **overrides}
    settings = load(
        IngestSettings, data_dir=data_dir, bus_url=f"memory://{uuidlib.uuid4().hex}", **overrides
    )
    return create_app(settings)


@pytest.fixture
def ingest(tmp_path: Path) -> IngestFactory:
    @asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
        app = ingest_app(tmp_path, **overrides)
        async with serving(app) as client:
            yield app, client

    return start


async def published(app: FastAPI, count: int) -> list[RawEnvelope]:
    """The first ``count`` envelopes ingest put on ``cdr.raw`` (read by a fresh group)."""
    bus = app.state.cdrflow.runtime.bus
    consumer = await bus.consumer([topics.RAW], f"check-{uuidlib.uuid4().hex}")
    try:
        found: list[RawEnvelope] = []
        for _ in range(50):
            for msg in await consumer.getmany(timeout_s=0.1, max_records=1000):
                found.append(RawEnvelope.from_json(msg.value))
            if len(found) >= count:
                return found
        raise AssertionError(f"{len(found)} envelopes on {topics.RAW}, expected {count}")
    finally:
        await consumer.close()
