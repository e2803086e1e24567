"""The whole slice: a switch posts, ingest publishes, the parser stores, the API lists.

Runs on both stacks: embedded (memory bus, SQLite) and deployed (PostgreSQL + Tansu Kafka).
"""

from __future__ import annotations

import random
import uuid as uuidlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select

from cdr_ingest.documents import Document
from cdr_ingest.service import IngestService
from cdr_ingest.settings import IngestSettings
from cdr_parser.models import cdrs, raw_payloads
from cdrflow.mock import generate_cdr
from cdrflow.platform import create_allinone_app, create_service_app
from cdrkit.bus import Record, open_bus
from cdrkit.db import create_engine
from cdrmodel import Origin, topics
from cdrmodel.envelope import PayloadKind
from tests.e2e.conftest import serving, wait_for
from tests.metrics import sample

TINY_2009 = "freeswitch/freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml"
INCOMING = "freeswitch/freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml"
JSON_CDR = "freeswitch/freeswitch_json_cdr_cgrates_answered.json"


async def _post_three_forms(client: httpx.AsyncClient, fixtures_dir: Path) -> list[str]:
    tiny = (fixtures_dir / TINY_2009).read_bytes()
    incoming = (fixtures_dir / INCOMING).read_bytes()
    jdoc = (fixtures_dir / JSON_CDR).read_bytes()
    answers = [
        await client.post(
            "/v1/cdr",
            params={"uuid": "a_91353230-461f-11de-aa7f-b10b4edc0c92"},
            content=b"cdr=" + quote(tiny, safe="").encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        await client.post("/v1/cdr", content=incoming, headers={"content-type": "text/xml"}),
        await client.post("/v1/cdr", content=jdoc, headers={"content-type": "application/json"}),
    ]
    for resp in answers:
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "accepted"
    return [r.json()["call_id"] for r in answers]


async def _list_all(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 50, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/cdrs", params=query)).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


async def test_all_in_one_on_embedded_defaults(tmp_path: Path, fixtures_dir: Path) -> None:
    app = create_allinone_app(data_dir=tmp_path, bus_url=f"memory://{uuidlib.uuid4().hex}")
    stored_before = sample("cdrflow_parser_cdrs_total", outcome="stored")
    async with serving(app) as client:
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        call_ids = await _post_three_forms(client, fixtures_dir)

        async def stored() -> bool:
            return len(await _list_all(client)) == 3

        await wait_for(stored, what="3 CDRs stored")
        cdr = (await client.get(f"/v1/cdrs/{call_ids[0]}")).json()
        assert cdr["caller_number"] == "1000"
        assert cdr["callee_number"] == "2622"
        assert cdr["hangup_cause"] == "ORIGINATOR_CANCEL"
        assert cdr["leg"] == "a"
        raw = await client.get(f"/v1/cdrs/{call_ids[0]}/raw")
        assert raw.content == (fixtures_dir / TINY_2009).read_bytes()
        stored = sample("cdrflow_parser_cdrs_total", outcome="stored") - stored_before
        assert stored == len(set(call_ids))
    assert (tmp_path / "cdrflow.db").is_file()


@pytest.mark.integration
async def test_post_store_list_on_postgres_and_kafka(
    fresh_pg_url: str, fresh_tansu: Any, fixtures_dir: Path
) -> None:
    common = {"database_url": fresh_pg_url, "bus_url": fresh_tansu.url}
    ingest, parser = create_service_app("ingest", **common), create_service_app("parser", **common)
    async with serving(ingest) as icli, serving(parser) as pcli:
        assert (await icli.get("/readyz")).status_code == 200
        call_ids = await _post_three_forms(icli, fixtures_dir)
        # The same CDR posted three times (a switch retrying) is stored once.
        incoming = (fixtures_dir / INCOMING).read_bytes()
        for _ in range(2):
            resp = await icli.post(
                "/v1/cdr", content=incoming, headers={"content-type": "text/xml"}
            )
            assert resp.status_code == 200

        async def stored() -> bool:
            return len(await _list_all(pcli)) == 3

        await wait_for(stored, what="3 CDRs stored", timeout=60)
        by_id = {c["call_id"]: c for c in await _list_all(pcli)}
        assert set(by_id) == set(call_ids)
        assert by_id[call_ids[1]]["leg"] == "b"  # the <originator> profile marks the B-leg
        number = (await pcli.get("/v1/cdrs", params={"number": "2622"})).json()["items"]
        assert [c["call_id"] for c in number] == [call_ids[0]]
        missing = await pcli.get("/v1/cdrs/no-such-call")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"

    engine = create_engine(fresh_pg_url)
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(cdrs)) == 3
        assert await conn.scalar(select(func.count()).select_from(raw_payloads)) == 3
    await engine.dispose()


@pytest.mark.integration
async def test_ingest_answers_4xx_json_and_never_2xx_for_bad_input(fresh_tansu: Any) -> None:
    app = create_service_app("ingest", bus_url=fresh_tansu.url)
    async with serving(app) as client:
        cases = [
            (b"<cdr><variables>", "text/xml", 400, "not_well_formed"),
            (b"x=1", "application/x-www-form-urlencoded", 400, "missing_field"),
            (b"<cdr/>", "image/gif", 415, "unsupported_media_type"),
            (b"", "text/xml", 400, "missing_field"),
        ]
        for body, ctype, status, code in cases:
            resp = await client.post("/v1/cdr", content=body, headers={"content-type": ctype})
            assert resp.status_code == status, (body, resp.text)
            assert resp.json()["error"] == code
            assert resp.json()["detail"]


@pytest.mark.integration
async def test_parser_aborted_mid_stream_loses_and_duplicates_nothing(
    fresh_pg_url: str, fresh_tansu: Any
) -> None:
    """The consume loop abandoned mid-stream without committing (``ConsumeLoop.abort``, in this
    process). The real crash — the parser process SIGKILLed between its database commit and its
    offset commit — is ``tests/e2e/test_chaos_processes.py``."""
    total = 2000
    rng = random.Random(7)
    bus = open_bus(fresh_tansu.url)
    await bus.start()
    ingest = IngestService(IngestSettings(bus_url=fresh_tansu.url), bus.producer)
    expected: set[str] = set()
    records = []
    for _ in range(total):
        call_id, xml = generate_cdr(rng)
        expected.add(call_id)
        doc = Document(xml, PayloadKind.FREESWITCH_XML, "application/xml")
        envelope = ingest.envelope(doc, call_id, None, Origin(remote_addr="127.0.0.1"))
        records.append(Record(value=envelope.to_json(), key=call_id.encode()))
    await bus.ensure_topics(topics.ALL)
    await bus.producer.send_many(topics.RAW, records)

    engine = create_engine(fresh_pg_url)

    async def count() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(cdrs)) or 0)

    common = {"database_url": fresh_pg_url, "bus_url": fresh_tansu.url, "batch_size": 100}
    stored_before = sample("cdrflow_parser_cdrs_total", outcome="stored")
    first = create_service_app("parser", **common)
    async with serving(first):

        async def some_stored() -> bool:
            return await count() >= 300

        await wait_for(some_stored, what="a first part stored", timeout=60)
        loop = first.state.cdrflow.components["parser"].loop
        await loop.abort()  # the batch in hand is never committed
    stored_at_crash = await count()
    assert stored_at_crash < total, "the crash came too late to test anything"

    second = create_service_app("parser", **common)
    async with serving(second) as client:

        async def all_stored() -> bool:
            return await count() >= total

        await wait_for(all_stored, what="every CDR stored after restart", timeout=120)
        listed = {c["call_id"] for c in await _list_all(client)}
    assert listed == expected
    # None twice, by the parser's own outcomes (a distinct count under the key cannot fail).
    assert sample("cdrflow_parser_cdrs_total", outcome="stored") - stored_before == total
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(raw_payloads)) == total
    await engine.dispose()

    # Every call reached cdr.normalized at least once (consumers there dedupe on call id).
    consumer = await bus.consumer([topics.NORMALIZED], f"check-{uuidlib.uuid4().hex}")
    seen: set[str] = set()
    for _ in range(200):
        for msg in await consumer.getmany(timeout_s=0.5, max_records=5000):
            seen.add(msg.key.decode() if msg.key else "")
        if seen >= expected:
            break
    await consumer.close()
    await bus.close()
    assert seen >= expected
