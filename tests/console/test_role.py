"""The console as its own role (distributed mode): its pages, where it tells the browser the APIs
are, and the services allowing its origin (CORS)."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from cdrflow.platform import create_service_app
from tests.e2e.conftest import serving

CONSOLE = "http://console.example.net:8006"


async def test_console_role_serves_pages_and_the_api_map(tmp_path: Path) -> None:
    app = create_service_app(
        "console",
        data_dir=tmp_path,
        bus_url=f"memory://{uuid4().hex}",
        parser_url="http://parser.example.net:8002/",
        recordings_url="http://rec.example.net:8005",
    )
    async with serving(app) as client:
        for path in ("/", "/calls", "/calls/a%2Fb", "/bills", "/stats", "/dead-letters"):
            r = await client.get(path)
            assert r.status_code == 200, path
            assert '<script src="/console/app.js"' in r.text
        apis = (await client.get("/console/config.json")).json()["apis"]
        assert apis["parser"] == "http://parser.example.net:8002"
        assert apis["recordings"] == "http://rec.example.net:8005"
        assert apis["billing"] == ""  # unset: the console's own origin
        js = await client.get("/console/app.js")
        assert js.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in js.text  # data goes in as text, never as markup
        assert (await client.get("/console/../pyproject.toml")).status_code == 404
        assert (await client.get("/console/index.py")).status_code == 404
        # It is a static role: no API of the services here.
        assert (await client.get("/v1/cdrs")).status_code == 404


async def test_services_allow_the_console_origin_only(tmp_path: Path) -> None:
    app = create_service_app(
        "parser",
        data_dir=tmp_path,
        bus_url=f"memory://{uuid4().hex}",
        cors_origins=CONSOLE,
    )
    async with serving(app) as client:
        preflight = {
            "Origin": CONSOLE,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        }
        r = await client.options("/v1/cdrs", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == CONSOLE
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = await client.get("/v1/cdrs", headers={"Origin": CONSOLE})
        assert r.headers["access-control-allow-origin"] == CONSOLE
        r = await client.get("/v1/cdrs", headers={"Origin": "http://evil.example.com"})
        assert "access-control-allow-origin" not in r.headers
