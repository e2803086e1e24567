"""Ingest's best-effort duplicate index: same call and bytes → "duplicate", not published again."""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

from prometheus_client import REGISTRY

from cdr_ingest.dedupe import RecentAccepts
from cdrflow.platform import create_allinone_app
from tests.e2e.conftest import serving, wait_for

TINY = "freeswitch/freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml"
CALL = "91353230-461f-11de-aa7f-b10b4edc0c92"


def test_window_forgets_the_oldest_and_zero_turns_it_off() -> None:
    recent = RecentAccepts(2)
    keys = [recent.key(f"call-{i}", "<cdr/>") for i in range(3)]
    for i, key in enumerate(keys):
        recent.add(key, f"env-{i}")
    assert len(recent) == 2
    assert recent.get(keys[0]) is None
    assert recent.get(keys[2]) == "env-2"
    assert recent.get(recent.key("call-2", "<cdr>other</cdr>")) is None  # other bytes
    assert recent.key(None, "<cdr/>") is None  # nothing to dedupe on
    off = RecentAccepts(0)
    off.add(keys[0], "env-0")
    assert off.get(keys[0]) is None


def _parser(outcome: str) -> float:
    return REGISTRY.get_sample_value("cdrflow_parser_cdrs_total", {"outcome": outcome}) or 0.0


async def test_same_bytes_duplicate_other_bytes_published_first_version_kept(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    doc = (fixtures_dir / TINY).read_bytes()
    app = create_allinone_app(data_dir=tmp_path, bus_url=f"memory://{uuidlib.uuid4()}")
    async with serving(app) as client:

        async def post(body: bytes) -> dict[str, str]:
            resp = await client.post(
                "/v1/cdr",
                params={"uuid": f"a_{CALL}"},
                content=body,
                headers={"content-type": "text/xml"},
            )
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

        first = await post(doc)
        assert first["status"] == "accepted"
        again = await post(doc)
        assert again == {"id": first["id"], "call_id": CALL, "status": "duplicate"}

        async def stored() -> bool:
            return (await client.get(f"/v1/cdrs/{CALL}")).status_code == 200

        await wait_for(stored, what="the CDR stored")
        seen = _parser("duplicate")
        changed = doc.replace(b"</cdr>", b"<!-- resent --></cdr>")
        assert (await post(changed))["status"] == "accepted"  # other bytes: published

        async def consumed() -> bool:
            return _parser("duplicate") >= seen + 1

        await wait_for(consumed, what="the parser to see the second version")
        raw = await client.get(f"/v1/cdrs/{CALL}/raw")
        assert raw.content == doc  # the store kept the first version
