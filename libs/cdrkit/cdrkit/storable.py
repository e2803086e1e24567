"""Text the stores cannot hold is refused at the edge, on every route, before any query runs.

PostgreSQL refuses a NUL character in text (and in a comparison), and neither database driver can
encode a lone UTF-16 surrogate (``"\\ud800"`` in a JSON string): either, reaching a query, was a
500. ``RefuseUnstorable`` answers 400 for a NUL in the path or the query string of any request;
``StorableBody`` is the base of every JSON request body and refuses (422, like any other invalid
field) a NUL or a lone surrogate in any of its strings, keys included.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

_SURROGATES = range(0xD800, 0xE000)


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    if "\x00" in text:
        return "holds a NUL character"
    if any(ord(c) in _SURROGATES for c in text):
        return "holds a lone UTF-16 surrogate (not a character)"
    return None


def _walk(value: Any, where: str) -> None:
    if isinstance(value, str):
        reason = unstorable(value)
        if reason:
            raise ValueError(f"{where or 'a text'} {reason}, which cannot be stored")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(key, f"a key of {where}" if where else "a key")
            _walk(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{where}[{index}]")


class StorableBody(BaseModel):
    """Base of request bodies: no string anywhere in it may hold what a store cannot."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        _walk(data, "")
        return data


_BODY = json.dumps(
    {
        "error": "invalid_input",
        "detail": "the path or query string holds a NUL character; nothing stored has one",
    }
).encode()


class RefuseUnstorable:
    """ASGI middleware: a NUL in the path or the query string is a 400 on every route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope.get("query_string", b"")
            if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_BODY)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _BODY})
                return
        await self.app(scope, receive, send)
