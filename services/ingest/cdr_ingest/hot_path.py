"""The two hot POST routes (``/v1/cdr``, ``/v1/events``) served without FastAPI's routing.

Every post went through FastAPI's router (matching each of the app's routes in turn), the route's
request/response wrapper and its dependency solving (for ``/v1/cdr``'s ``uuid`` query parameter):
~100 µs per post of the ~160 µs the app spent around ``IngestService.accept`` in process (issue
15). ``HotPosts`` is the innermost middleware of the app's own stack: a POST to exactly one of
those paths is handed to the same endpoint function the route calls, with the app's exception
handlers applied exactly as Starlette's ``ExceptionMiddleware`` applies them. Everything outside
it is unchanged: the server error middleware (a 500 for an unhandled exception), request
metrics, the NUL refusal, CORS, FastAPI's body limit and telemetry. Anything else (another
method, another path, a trailing slash) goes down the app's own stack as before. The routes stay
registered as they are, so the OpenAPI document is the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette._utils import get_route_path
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class HotPosts:
    """ASGI middleware: ``POST <path>`` for a path of ``endpoints`` is answered by its endpoint
    (``request -> response``), inside the app's exception handlers."""

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, Endpoint]) -> None:
        self.app = app
        # The handlers of the ExceptionMiddleware FastAPI builds right inside the user
        # middleware; without it (a different FastAPI) nothing takes the short path.
        self.handlers = (
            (app._exception_handlers, app._status_handlers)
            if isinstance(app, ExceptionMiddleware)
            else None
        )
        self.apps = {path: _endpoint_app(endpoint) for path, endpoint in endpoints.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.handlers is not None:
            endpoint = self.apps.get(get_route_path(scope))
            if endpoint is not None:
                scope["starlette.exception_handlers"] = self.handlers
                request = Request(scope, receive, send)
                await wrap_app_handling_exceptions(endpoint(request), request)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _endpoint_app(endpoint: Endpoint) -> Callable[[Request], ASGIApp]:
    def bind(request: Request) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await endpoint(request)
            await response(scope, receive, send)

        return app

    return bind


def install(app: FastAPI, endpoints: Mapping[str, Endpoint]) -> None:
    """Innermost of the app's middleware, right outside FastAPI's ExceptionMiddleware."""
    app.user_middleware.append(Middleware(HotPosts, endpoints=endpoints))
