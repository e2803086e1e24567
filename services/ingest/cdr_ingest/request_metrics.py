"""Ingest's request metrics, counted for every answer to a post: the ASGI layer sees the status
the client gets, whether a handler returned it, an error handler made it from an exception, an
auth dependency refused the post, or an unhandled exception turned into a 500."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdr_ingest.documents import media_type
from cdr_ingest.metrics import REQUEST_SECONDS, REQUESTS

_KINDS = frozenset(
    {
        "application/x-www-form-urlencoded",
        "application/x-www-form-base64-encoded",
        "application/x-www-form-plaintext",
        "text/xml",
        "application/xml",
        "application/json",
        "multipart/form-data",
    }
)
# Routes whose posts carry call start/end records rather than a CDR document.
_EVENT_PATHS = frozenset({"/v1/events"})


def kind_label(path: str, content_type: str | None) -> str:
    """The ``kind`` label: ``call.event`` for /v1/events, else the media type (bounded set)."""
    if path in _EVENT_PATHS:
        return "call.event"
    mtype = media_type(content_type) or "none"
    return mtype if mtype in _KINDS or mtype == "none" else "other"


def post_paths(router: APIRouter) -> tuple[str, ...]:
    """The router's POST paths, each cut before its first path parameter."""
    return tuple(
        sorted(
            {
                route.path.split("{")[0]
                for route in router.routes
                if isinstance(route, APIRoute) and "POST" in (route.methods or ())
            }
        )
    )


class RequestMetrics:
    """Counts ``cdrflow_ingest_requests_total{status, kind}`` and observes
    ``cdrflow_ingest_request_seconds`` for every POST to one of ingest's routes."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths
        self._exact = frozenset(paths)
        self._prefixes = tuple(p for p in paths if p.endswith("/"))
        # The labelled counter per (status, kind): both come from bounded sets (issue 15:
        # ``labels()`` validates and locks on every call).
        self._counters: dict[tuple[int, str], Any] = {}

    def counts(self, path: str) -> bool:
        """``path`` is one of ``paths``, or under one of them that ends with a slash."""
        return path in self._exact or path.startswith(self._prefixes)

    def _count(self, status: int, kind: str) -> None:
        counter = self._counters.get((status, kind))
        if counter is None:
            counter = self._counters[status, kind] = REQUESTS.labels(str(status), kind)
        counter.inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not self.counts(scope["path"]):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it starts a response
        content_type = None
        for name, value in scope.get("headers") or ():
            if name == b"content-type":
                content_type = value.decode("latin-1")
                break

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._count(status, kind_label(scope["path"], content_type))
            REQUEST_SECONDS.observe(time.perf_counter() - started)


def install(app: FastAPI, routers: list[APIRouter]) -> None:
    """Count the posts to ``routers``' POST routes (ingest's own)."""
    paths = tuple(sorted({p for router in routers for p in post_paths(router)}))
    app.add_middleware(RequestMetrics, paths=paths)
