"""cdrflow_ingest_requests_total counts every answer: handled errors, auth refusals and unhandled
500s alike (an ASGI layer sees the status the client gets)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cdr_ingest.request_metrics import RequestMetrics, kind_label
from tests.ingest.conftest import ingest_app


def _count(status: str, kind: str) -> float:
    labels = {"status": status, "kind": kind}
    return REGISTRY.get_sample_value("cdrflow_ingest_requests_total", labels) or 0.0


async def test_a_store_failure_answer_is_counted(tmp_path: Path) -> None:
    objects = tmp_path / "objects"
    app = ingest_app(tmp_path, inline_max_bytes=16, object_store_url=objects.resolve().as_uri())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            before = (_count("503", "text/xml"), _count("200", "text/xml"))
            call = uuid.uuid4()
            doc = f"<cdr><variables><uuid>{call}</uuid></variables></cdr>".encode()
            ok = await client.post(
                f"/v1/cdr?uuid={call}", content=doc, headers={"content-type": "text/xml"}
            )
            assert ok.status_code == 200, ok.text
            # The claim-check store breaks under the running service (its directory is gone
            # and a file stands in its place): the post is answered 503, counted as such.
            shutil.rmtree(objects)
            objects.write_text("not a directory")
            call = uuid.uuid4()
            doc = f"<cdr><variables><uuid>{call}</uuid></variables></cdr>".encode()
            failed = await client.post(
                f"/v1/cdr?uuid={call}", content=doc, headers={"content-type": "text/xml"}
            )
            assert failed.status_code == 503
            assert _count("200", "text/xml") == before[1] + 1
            assert _count("503", "text/xml") == before[0] + 1


async def test_refusals_before_the_handler_are_counted(tmp_path: Path) -> None:
    app = ingest_app(tmp_path, basic_auth="fs:secret-password")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            before = _count("401", "application/json")
            resp = await client.post(
                "/v1/cdr", content=b"{}", headers={"content-type": "application/json"}
            )
            assert resp.status_code == 401
            assert _count("401", "application/json") == before + 1
            # Reads are not posts: not counted.
            assert (
                await client.get("/v1/spool", auth=("fs", "secret-password"))
            ).status_code == 200
            assert _count("401", "application/json") == before + 1


def test_kind_labels_are_bounded() -> None:
    assert kind_label("/v1/events", "application/json") == "call.event"
    assert kind_label("/v1/cdr", "text/xml; charset=utf-8") == "text/xml"
    assert kind_label("/v1/cdr", "application/x-evil") == "other"
    assert kind_label("/v1/cdr", None) == "none"


async def test_an_unhandled_exception_is_counted_as_the_500_the_client_gets() -> None:
    async def boom(_request: Request) -> Response:
        raise RuntimeError("a bug")

    app = Starlette(routes=[Route("/v1/cdr", boom, methods=["POST"])])
    app.add_middleware(RequestMetrics, paths=("/v1/cdr",))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        before = _count("500", "text/xml")
        resp = await client.post("/v1/cdr", content=b"<cdr/>", headers={"content-type": "text/xml"})
        assert resp.status_code == 500
        assert _count("500", "text/xml") == before + 1
