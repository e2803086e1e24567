"""App factory shared by every service and by the all-in-one runner.

A service is a ``ServiceSpec``: its routers, its migrations and a ``start`` context manager that
opens its resources (consume loops, background jobs) on a shared ``Runtime`` (bus, database).
``create_app`` mounts one or several specs on one FastAPI app, so the all-in-one process serves
exactly the same paths as the separate services.

Health (docs/architecture.md): ``/healthz`` the process is up; ``/readyz`` the app can answer its
requests (database reachable; a component that serves without the bus, like ingest, adds its own
conditions), so a Kafka outage never takes the read APIs of the consumers out of a Service;
``/readyz/consumers`` the consuming side (bus reachable, every consume loop running). ``/metrics``
carries the families of the services mounted on the app only (``ServiceSpec.metric_prefixes``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cdrkit.auth import ApiTokens, log_access_mode, parse_api_tokens
from cdrkit.bus import Bus, open_bus
from cdrkit.db import create_engine, migrate, ping, session_factory
from cdrkit.openapi import Consuming, Health, Readiness, install_openapi
from cdrkit.redact import public_error, public_text
from cdrkit.settings import ServiceSettings
from cdrkit.storable import RefuseUnstorable
from cdrmodel.errors import CdrflowError

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Resources shared by the services of one process."""

    settings: ServiceSettings
    bus: Bus
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


class Component(Protocol):
    def ready(self) -> str | None:
        """None when able to serve, else a sentence saying why not."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    start: Callable[[Runtime], AbstractAsyncContextManager[Component]]
    routers: Sequence[APIRouter] = ()
    migrations: str | None = None  # package holding the Alembic env.py and versions/
    # Whether the service needs the database; ingest does not, so a database outage never
    # takes the edge that accepts CDRs out of rotation.
    uses_database: bool = True
    # Whether the service's work is consuming from the bus. True: a bus ping and the component's
    # ready() (its consume loops) are reported on /readyz/consumers, and /readyz (serving: the
    # database) stays green through a Kafka outage. False (ingest, which spools while the broker
    # is away): the component's ready() is part of /readyz, and the bus is not checked.
    bus_required: bool = True
    # Metric families this service exports on /metrics (name prefixes). None: its own
    # ``cdrflow_<name>_`` families plus the consume loops' ``cdrflow_bus_`` ones. Families that do
    # not start with ``cdrflow_`` (process, Python) are always exported.
    metric_prefixes: tuple[str, ...] | None = None
    # Called with the app once it is built (middleware of the service's own, e.g. request metrics
    # that must see every answer, unhandled 500s included).
    install: Callable[[FastAPI], None] | None = None

    def exported_metric_prefixes(self) -> tuple[str, ...]:
        if self.metric_prefixes is not None:
            return self.metric_prefixes
        return (f"cdrflow_{self.name}_", "cdrflow_bus_")


class ServiceRegistry:
    """The default registry seen through a filter: ``cdrflow_*`` families are exported only when
    they start with one of ``prefixes``. Every service module registers its metrics in the
    default registry at import, and a process that imports several services (the CLI) would
    otherwise export every one of them, the others' at 0."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.prefixes = tuple(prefixes)

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if not family.name.startswith("cdrflow_") or family.name.startswith(self.prefixes):
                yield family


@dataclass
class AppState:
    components: dict[str, Component] = field(default_factory=dict)
    runtime: Runtime | None = None
    api_tokens: ApiTokens = field(default_factory=ApiTokens)


def component(request: Request, name: str) -> Any:
    return request.app.state.cdrflow.components[name]


@asynccontextmanager
async def open_runtime(
    settings: ServiceSettings, specs: Sequence[ServiceSpec]
) -> AsyncIterator[Runtime]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url)
    bus = open_bus(settings.bus_url, sasl_password=settings.bus_password)
    try:
        if settings.auto_migrate:
            for spec in specs:
                if spec.migrations:
                    await migrate(engine, spec.migrations, f"alembic_version_{spec.name}")
        await bus.start()
        yield Runtime(settings, bus, engine, session_factory(engine))
    finally:
        await bus.close()
        await engine.dispose()


def create_app(title: str, settings: ServiceSettings, specs: Sequence[ServiceSpec]) -> FastAPI:
    secret = settings.api_tokens
    state = AppState(api_tokens=parse_api_tokens(secret.get_secret_value() if secret else None))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log_access_mode(state.api_tokens, title)
        async with AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(open_runtime(settings, specs))
            state.runtime = runtime
            for spec in specs:
                state.components[spec.name] = await stack.enter_async_context(spec.start(runtime))
            log.info("%s started (bus %s)", title, settings.bus_url.split("?")[0])
            yield
            log.info("%s stopping", title)
        state.components.clear()
        state.runtime = None

    uses_database = any(spec.uses_database for spec in specs)
    # Swagger UI and ReDoc from the package's own assets: /docs works without internet.
    app = FastAPIOffline(title=title, lifespan=lifespan, static_url="/docs-assets")
    app.state.cdrflow = state
    app.add_middleware(RefuseUnstorable)
    # Outermost (added last): refusals and errors carry the CORS headers too.
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Content-Length", "Accept-Ranges"],
        )
    install_error_handlers(app)
    install_openapi(app)
    remember_telemetry_check(app)
    registry = ServiceRegistry([p for spec in specs for p in spec.exported_metric_prefixes()])
    app.include_router(
        health_router(
            state,
            uses_database=uses_database,
            consumers={spec.name for spec in specs if spec.bus_required},
            registry=registry,
        )
    )
    for spec in specs:
        for router in spec.routers:
            app.include_router(router)
    for spec in specs:
        if spec.install is not None:
            spec.install(app)
    return app


def _otel_globals() -> Callable[[], tuple[object, object, object]] | None:
    """A function returning OpenTelemetry's three global providers as set (None while unset),
    read without the environment lookups of ``get_*_provider``; None if this version of the API
    keeps them elsewhere."""
    from opentelemetry import trace
    from opentelemetry._logs import _internal as logs
    from opentelemetry.metrics import _internal as metrics

    names = ((trace, "_TRACER_PROVIDER"), (metrics, "_METER_PROVIDER"), (logs, "_LOGGER_PROVIDER"))
    if not all(hasattr(module, name) for module, name in names):
        return None

    def current() -> tuple[object, object, object]:
        return (trace._TRACER_PROVIDER, metrics._METER_PROVIDER, logs._LOGGER_PROVIDER)

    return current


def remember_telemetry_check(app: FastAPI) -> None:
    """FastAPI answers every request through its native OpenTelemetry when a global provider
    is configured, and decides it per request (``NativeTelemetry.enabled``: each provider's
    ``get_*_provider``, an ``os.environ`` lookup each when unset): 10-28 µs of the one event
    loop per post (docs/performance.md, ninth round, h9allinone). Its answer depends only on the
    app's telemetry config and on those three global providers, which the OpenTelemetry API
    sets once (in code, or from ``OTEL_PYTHON_*_PROVIDER`` on the first ``get_*_provider``,
    which this check makes): it is remembered, and asked again whenever one of the globals is
    not what it was. (An ``OTEL_PYTHON_*_PROVIDER`` variable added to ``os.environ`` while the
    process serves, with no provider set yet, is the one change not seen.)"""
    telemetry = getattr(app, "_native_telemetry", None)
    check = getattr(telemetry, "enabled", None)
    current = _otel_globals() if check is not None else None
    if check is None or current is None:
        return  # another FastAPI: its own check, as it is
    seen: list[object] = [object(), False]  # (the globals it was decided for, the answer)

    def enabled() -> bool:
        now = current()
        if now != seen[0]:
            answer = bool(check())
            seen[:] = [current(), answer]  # check() may have set a provider from the environment
            return answer
        return bool(seen[1])

    telemetry.enabled = enabled  # type: ignore[union-attr]


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


def install_error_handlers(app: FastAPI) -> None:
    """Every error answer is ``{"error": code, "detail": sentence}``."""

    @app.exception_handler(CdrflowError)
    async def _cdrflow_error(_request: Request, exc: CdrflowError) -> JSONResponse:
        headers = getattr(exc, "headers", None)  # e.g. a 401's WWW-Authenticate challenge
        return JSONResponse(error_body(exc.code, exc.detail), exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        return JSONResponse(error_body("invalid_request", "; ".join(parts)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names only the methods of the first route on the path; GET and DELETE
            # /v1/alerts are two routes. Allow lists every method some route takes here.
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers
        )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods some route of ``app`` answers on the request's path."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def health_router(
    state: AppState,
    *,
    uses_database: bool,
    consumers: set[str] | frozenset[str] = frozenset(),
    registry: ServiceRegistry | None = None,
) -> APIRouter:
    """``/healthz``, ``/readyz``, ``/readyz/consumers`` and ``/metrics``. ``consumers`` names the
    components whose ready() reports consume loops (ServiceSpec.bus_required)."""
    router = APIRouter(tags=["health"])
    exported = registry or ServiceRegistry(("cdrflow_",))

    @router.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready, and why"}},
    )
    async def readyz() -> JSONResponse:
        """Able to answer requests: started, database reachable (the bus is not part of it)."""
        problems: list[str] = []
        runtime = state.runtime
        if runtime is None:
            problems.append("not started")
        else:
            if uses_database:
                try:
                    async with asyncio.timeout(5):
                        await ping(runtime.engine)
                except Exception as exc:
                    problems.append(f"database unreachable: {public_error(exc)}")
            for name, comp in state.components.items():
                if name not in consumers and (reason := comp.ready()):
                    problems.append(public_text(f"{name}: {reason}"))
        if problems:
            return JSONResponse({"status": "not_ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    @router.get(
        "/readyz/consumers",
        response_model=Consuming,
        responses={503: {"model": Consuming, "description": "Not consuming, and why"}},
    )
    async def readyz_consumers() -> JSONResponse:
        """The consuming side: bus reachable and every consume loop running (503 otherwise)."""
        problems: list[str] = []
        runtime = state.runtime
        if runtime is None:
            problems.append("not started")
        elif consumers & state.components.keys():
            try:
                async with asyncio.timeout(5):
                    await runtime.bus.ping()
            except Exception as exc:
                problems.append(f"bus unreachable: {public_error(exc)}")
            for name, comp in state.components.items():
                if name in consumers and (reason := comp.ready()):
                    problems.append(public_text(f"{name}: {reason}"))
        names = sorted(consumers & state.components.keys())
        if problems:
            return JSONResponse(
                {"status": "not_consuming", "consumers": names, "problems": problems},
                status_code=503,
            )
        return JSONResponse({"status": "consuming", "consumers": names})

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(exported), media_type=CONTENT_TYPE_LATEST)

    return router
