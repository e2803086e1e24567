"""The operator console: static pages (HTML, JS, CSS; no build step, nothing from a CDN) that
call the services' own APIs from the browser.

The all-in-one serves it at ``/`` beside every service's routes (same origin: no configuration).
In the distributed mode it is the ``console`` role (``cdrflow serve console``, port 8006), which
serves only these pages and ``/console/config.json``, telling the browser where each service's
API is (``CONSOLE_<SERVICE>_URL``); the services then allow the console's origin with
``CDRFLOW_CORS_ORIGINS``. The console never reads a service's tables: everything it shows comes
from the same REST APIs that curl uses, with the operator's token (docs/console.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cdrkit.app import Runtime, ServiceSpec
from cdrkit.auth import Principal, Role, require
from cdrkit.settings import ServiceSettings
from cdrmodel.errors import NotFound

STATIC = resources.files("cdrflow.console").joinpath("static")
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# The pages of the single-page app: each path answers index.html, the script draws the page.
PAGES = ("/", "/calls", "/bills", "/dead-letters", "/devices", "/pexip", "/stats")
SERVICE_NAMES = ("ingest", "parser", "billing", "stats", "recordings")


class ConsoleSettings(ServiceSettings):
    """``CONSOLE_*``: where the browser finds each service's API. Empty (the default) means the
    console's own origin, as in the all-in-one."""

    model_config = SettingsConfigDict(
        env_prefix="CONSOLE_", frozen=True, extra="ignore", populate_by_name=True
    )

    # Where the browser reaches ingest's API (edge devices, Pexip pulls), e.g.
    # https://ingest.cdr.example.net; empty: the console's own origin.
    ingest_url: str = Field(default="", max_length=500)
    # Where the browser reaches the parser's API (calls, raw documents, dead letters).
    parser_url: str = Field(default="", max_length=500)
    # Where the browser reaches billing's API (charges, bills).
    billing_url: str = Field(default="", max_length=500)
    # Where the browser reaches the stats service (its /dashboard is the Stats page).
    stats_url: str = Field(default="", max_length=500)
    # Where the browser reaches the recordings API (the audio player, downloads).
    recordings_url: str = Field(default="", max_length=500)

    def apis(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_url").rstrip("/") for name in SERVICE_NAMES}


def _page() -> HTMLResponse:
    return HTMLResponse(
        STATIC.joinpath("index.html").read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def console_router(settings: ConsoleSettings) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    apis = settings.apis()

    for path in PAGES:
        router.add_api_route(path, _page, methods=["GET"], response_class=HTMLResponse)

    @router.get("/calls/{call_id:path}", response_class=HTMLResponse)
    async def call_page(call_id: str) -> HTMLResponse:
        return _page()

    @router.get("/console/config.json")
    async def config() -> JSONResponse:
        return JSONResponse({"apis": apis}, headers={"Cache-Control": "no-cache"})

    @router.get("/console/whoami")
    async def whoami(
        principal: Annotated[Principal | None, Depends(require(Role.READ))],
    ) -> JSONResponse:
        """The role of the presented token, so the pages hide what it may not do: ``open``
        while no tokens are configured; a bad or missing token is the APIs' own 401."""
        body = (
            {"open": True, "role": "admin"}
            if principal is None
            else {"open": False, "role": principal.role.label}
        )
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @router.get("/console/{name}")
    async def asset(name: str) -> Response:
        ctype = ASSETS.get(name)
        if ctype is None:
            raise NotFound(f"no console asset {name!r}")
        return Response(
            STATIC.joinpath(name).read_bytes(),
            media_type=ctype,
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return router


@dataclass
class ConsoleComponent:
    def ready(self) -> str | None:
        return None


def spec(settings: ConsoleSettings) -> ServiceSpec:
    @asynccontextmanager
    async def start(_runtime: Runtime) -> AsyncIterator[ConsoleComponent]:
        yield ConsoleComponent()

    return ServiceSpec(
        "console",
        start,
        [console_router(settings)],
        None,
        uses_database=False,
        bus_required=False,
    )
