"""A small HTTP/1.1 client for the agent's two requests (JSON POSTs to ingest).

The agent runs on small boxes and must start fast: a general HTTP client library costs more to
import than the whole agent (httpx brings anyio, httpcore, h11, and its CLI's click and rich).
This one keeps one connection alive, speaks ``Content-Length`` and chunked answers, TLS for
``https://``, and retries a request once on a fresh connection when a kept-alive one turns out to
be closed (safe: ingest is idempotent on (device, seq)).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


class HttpError(Exception):
    """No answer: the connection failed, timed out, or the answer was not HTTP."""


@dataclass(frozen=True, slots=True)
class Response:
    status_code: int
    headers: dict[str, str]  # lower-case names
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class HttpClient:
    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self.tls = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.tls else 80)
        self.prefix = url.path.rstrip("/")
        self.authority = url.netloc.rpartition("@")[2]
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None

    async def post_json(
        self, path: str, data: Any, *, headers: dict[str, str] | None = None, timeout: float = 30
    ) -> Response:
        body = json.dumps(data, separators=(",", ":")).encode()
        head = [
            f"POST {self.prefix}{path} HTTP/1.1",
            f"Host: {self.authority}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Accept: application/json",
            "User-Agent: cdrflow-edge",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None
                try:
                    # Not asyncio.wait_for: on Python 3.11 it returns the answer when the
                    # caller's cancel arrives as the exchange completes (the cancel is lost, and
                    # the agent's stop waited for a delivery loop that went on posting).
                    async with asyncio.timeout(timeout):
                        return await self._exchange(request)
                except TimeoutError:
                    self._drop()
                    raise HttpError(f"no answer within {timeout:g}s") from None
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    self._drop()
                    if reused and attempt == 1:
                        continue  # the server closed an idle kept-alive connection
                    raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def _exchange(self, request: bytes) -> Response:
        if self._conn is None:
            context = ssl.create_default_context() if self.tls else None
            self._conn = await asyncio.open_connection(self.host, self.port, ssl=context)
        reader, writer = self._conn
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEADER_BYTES:
            raise ValueError("the answer's header is too large")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._chunked(reader)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_BODY_BYTES:
                raise ValueError("the answer's body is too large")
            content = await reader.readexactly(length)
        else:  # delimited by the end of the connection
            content = await reader.read(MAX_BODY_BYTES)
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            self._drop()
        return Response(status, headers, content)

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            length = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if length == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected: the final CRLF
                return b"".join(parts)
            size += length
            if size > MAX_BODY_BYTES:
                raise ValueError("the answer's body is too large")
            parts.append(await reader.readexactly(length))
            await reader.readexactly(2)
