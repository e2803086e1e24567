"""A minimal HTTP/1.1 keep-alive load generator on raw asyncio streams.

httpx or requests would spend more CPU per request than the server under test, so the figures
would measure the client. This one sends a pre-built request and reads the answer by its
Content-Length, nothing more.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]


def build_request(path: str, body: bytes, content_type: str, host: str = "127.0.0.1") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _worker(
    host: str,
    port: int,
    requests: list[bytes],
    stop_at: float,
    result: LoadResult,
    start: int,
    step: int,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    try:
        while time.perf_counter() < stop_at:
            req = requests[i % len(requests)]
            i += step  # connection n sends n, n + step, …: no two connections send the same one
            t0 = time.perf_counter()
            writer.write(req)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.requests += 1
            if not status_line.startswith(b"HTTP/1.1 200"):
                result.errors += 1
    finally:
        writer.close()


async def run_load(
    host: str, port: int, requests: list[bytes], *, seconds: float, connections: int
) -> LoadResult:
    result = LoadResult(0, 0, 0.0, [])
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(
        *(
            _worker(host, port, requests, stop_at, result, n, connections)
            for n in range(connections)
        )
    )
    result.seconds = time.perf_counter() - started
    return result
