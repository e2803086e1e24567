"""cdrkit.app: /metrics carries the service's own families only; /readyz keeps a consumer's read
API in service through a Kafka outage while /readyz/consumers reports the consuming side."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cdrflow.platform import create_service_app
from cdrkit.testing.tansu import TansuBroker
from tests.e2e.conftest import serving, wait_for


def _families(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text) if f.name.startswith("cdrflow_")}


async def test_each_service_exports_its_own_metric_families_only(tmp_path: Path) -> None:
    # cdrflow.platform imports every service, so every family is in the default registry.
    memory = f"memory://{uuid.uuid4().hex}"
    families = {}
    for name in ("ingest", "parser"):
        app = create_service_app(name, data_dir=tmp_path / name, bus_url=memory)
        async with serving(app) as client:
            families[name] = _families((await client.get("/metrics")).text)
    assert families["ingest"], "ingest exported no cdrflow family"
    assert all(f.startswith("cdrflow_ingest_") for f in families["ingest"]), families["ingest"]
    assert any(f.startswith("cdrflow_parser_") for f in families["parser"])
    assert "cdrflow_bus_consumer_lag_messages" in families["parser"]
    own = ("cdrflow_parser_", "cdrflow_bus_", "cdrflow_edge_device_")
    assert all(f.startswith(own) for f in families["parser"]), families["parser"]


async def test_read_api_stays_ready_while_kafka_is_down(
    tmp_path: Path, fresh_tansu: TansuBroker
) -> None:
    url = f"{fresh_tansu.url}&session_timeout_ms=6000&heartbeat_interval_ms=200&ping_timeout_ms=500"
    app = create_service_app("parser", data_dir=tmp_path, bus_url=url)
    async with serving(app) as client:
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        consumers = await client.get("/readyz/consumers")
        assert consumers.json() == {"status": "consuming", "consumers": ["parser"]}

        fresh_tansu.stop()

        async def consumer_red() -> bool:
            return (await client.get("/readyz/consumers")).status_code == 503

        await wait_for(consumer_red, what="/readyz/consumers turning red", timeout=20)
        body = (await client.get("/readyz/consumers")).json()
        assert body["status"] == "not_consuming"
        assert any("bus unreachable" in p for p in body["problems"]), body
        # Serving readiness and the read API do not depend on the broker.
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        cdrs = await client.get("/v1/cdrs", params={"since": "2020-01-01T00:00:00Z"})
        assert cdrs.status_code == 200, cdrs.text

        fresh_tansu.start()

        async def consumer_green() -> bool:
            return (await client.get("/readyz/consumers")).status_code == 200

        await wait_for(consumer_green, what="/readyz/consumers green again", timeout=30)


async def test_readyz_is_red_before_start(tmp_path: Path) -> None:
    app = create_service_app("parser", data_dir=tmp_path, bus_url=f"memory://{uuid.uuid4().hex}")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/readyz/consumers")).status_code == 503
