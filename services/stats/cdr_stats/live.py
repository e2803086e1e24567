"""Fan-out of live events to ``GET /v1/live`` clients (server-sent events).

Each client has a bounded queue: when it is full (a client slower than the feed) new events
for that client are dropped and counted, and the client is told with a ``dropped`` event so it
can re-read ``/v1/buckets``. The server's memory never grows with a slow client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from cdr_stats.metrics import LIVE_CLIENTS, LIVE_DROPPED


class LiveClient:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(size)
        self.dropped = 0

    def put(self, message: str | None) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            LIVE_DROPPED.inc()


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class LiveHub:
    def __init__(self, queue_size: int, keepalive_s: float) -> None:
        self.queue_size = queue_size
        self.keepalive_s = keepalive_s
        self.clients: set[LiveClient] = set()

    def publish(self, event: str, data: Any) -> None:
        if not self.clients:
            return
        message = sse(event, data)
        for client in self.clients:
            client.put(message)

    def close(self) -> None:
        for client in self.clients:
            if client.queue.full():  # the end marker must get in: drop the oldest event
                client.queue.get_nowait()
            client.put(None)

    async def stream(self, first: list[str]) -> AsyncIterator[str]:
        """The event stream of one client: ``first`` messages, then live events and
        keep-alive comments until the client leaves (or the service stops)."""
        client = LiveClient(self.queue_size)
        self.clients.add(client)
        LIVE_CLIENTS.inc()
        try:
            yield "retry: 3000\n\n"
            for opening in first:
                yield opening
            while True:
                if client.dropped:
                    yield sse("dropped", {"events": client.dropped})
                    client.dropped = 0
                try:
                    async with asyncio.timeout(self.keepalive_s):
                        message = await client.queue.get()
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if message is None:
                    return
                yield message
        finally:
            self.clients.discard(client)
            LIVE_CLIENTS.dec()
