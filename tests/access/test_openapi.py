"""What the OpenAPI document promises about shapes, media types, bodies and docs pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.access.conftest import AllInOne

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "freeswitch"
XML = FIXTURES / "freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml"
JSON_DOC = FIXTURES / "freeswitch_json_cdr_cgrates_answered.json"


def _ops(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


async def test_docs_pages_need_no_internet(allinone: AllInOne) -> None:
    async with allinone() as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            assert "cdn" not in html.lower(), page
            assets = [a for a in ("swagger-ui-bundle.js", "redoc.standalone.js") if a in html]
            assert assets, page
            for asset in assets:
                r = await client.get(f"/docs-assets/{asset}")
                assert r.status_code == 200
                assert len(r.content) > 100_000


async def test_shapes_media_types_and_bodies(allinone: AllInOne) -> None:
    async with allinone() as client:
        doc = (await client.get("/openapi.json")).json()
    ops = _ops(doc)
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for (method, path), op in ops.items():
        answers = op["responses"]
        # every error is the one shape, the 422 included (not FastAPI's HTTPValidationError)
        for status in ("400", "401", "403", "404", "409", "413", "415", "422"):
            if status in answers:
                schema = answers[status]["content"]["application/json"]["schema"]
                name = schema["$ref"].rsplit("/", 1)[-1]
                required = doc["components"]["schemas"][name]["required"]
                assert {"error", "detail"} <= set(required), (method, path, status)
                if status != "400":  # a 400 may carry more (the reasons per record)
                    assert schema == error, (method, path, status)
        ok = next(s for s in ("200", "201", "202", "206", "302") if s in answers)
        content = answers[ok].get("content", {})
        if "application/json" in content and path != "/v1/cdrs/{call_id}/raw":
            assert content["application/json"]["schema"], (method, path)  # a response model
        if op.get("security"):
            assert {"401", "403"} <= set(answers), (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert set(ops["GET", "/v1/cdrs.csv"]["responses"]["200"]["content"]) == {"text/csv"}
    assert set(ops["GET", "/v1/live"]["responses"]["200"]["content"]) == {"text/event-stream"}
    audio = ops["GET", "/v1/recordings/{call_id}/audio"]["responses"]
    assert {"200", "206", "302", "416"} <= set(audio)
    assert "audio/wav" in audio["206"]["content"]
    raw = ops["GET", "/v1/cdrs/{call_id}/raw"]["responses"]
    assert {"text/xml", "application/json"} <= set(raw["200"]["content"])
    assert "410" in raw
    # the ingest bodies, with real FreeSWITCH CDRs as examples
    body = ops["POST", "/v1/cdr"]["requestBody"]["content"]
    assert body["text/xml"]["example"] == XML.read_text()
    assert body["application/json"]["example"] == json.loads(JSON_DOC.read_text())
    assert {"application/x-www-form-urlencoded", "multipart/form-data"} <= set(body)
    events = ops["POST", "/v1/events"]["requestBody"]["content"]["application/json"]
    assert events["example"][0]["type"] == "start"


async def test_the_examples_are_accepted(allinone: AllInOne) -> None:
    async with allinone() as client:
        doc = (await client.get("/openapi.json")).json()
        body = doc["paths"]["/v1/cdr"]["post"]["requestBody"]["content"]
        r = await client.post(
            "/v1/cdr", content=body["text/xml"]["example"], headers={"content-type": "text/xml"}
        )
        assert (r.status_code, r.json()["status"]) == (200, "accepted")
        r = await client.post("/v1/cdr", json=body["application/json"]["example"])
        assert (r.status_code, r.json()["status"]) == (200, "accepted")
        r = await client.post("/v1/cdr", data=body["application/x-www-form-urlencoded"]["example"])
        assert (r.status_code, r.json()["status"]) == (200, "duplicate")  # the XML again
        events = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]
        r = await client.post("/v1/events", json=events["application/json"]["example"])
        assert (r.status_code, r.json()["accepted"]) == (202, 2)


async def test_405_allows_every_method_of_the_path(allinone: AllInOne) -> None:
    async with allinone() as client:
        r = await client.put("/v1/alerts")
        assert r.status_code == 405
        assert r.json()["error"] == "method_not_allowed"
        assert r.headers["allow"] == "GET, DELETE"
        r = await client.post("/v1/recordings/c-1/audio")
        assert r.headers["allow"] == "GET, HEAD"
