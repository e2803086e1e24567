"""A real platform (all-in-one app under uvicorn, SQLite, in-process bus) behind a gate that
can take ingest off the network, real pseudo-terminals, and in-process edge agents."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from bench.common import free_port
from cdr_ingest.edge.agent import Agent
from cdr_ingest.edge.settings import EdgeSettings
from cdrflow.platform import create_allinone_app

TOKEN = "edge-test-token"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hipath" / "hipath_serial_lines.bin"


class Gate:
    """A TCP forwarder in front of ingest: ``close()`` takes ingest off the network (connections
    refused, open ones cut), ``open()`` brings it back on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        if self.server is not None:
            return
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.pipes.add(task)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        finally:
            writer.close()
            up_w.close()
            self.pipes.discard(task)


@dataclass
class Platform:
    url: str  # through the gate: what agents use
    direct: str  # ingest and the store, never gated
    gate: Gate

    async def cdrs_of(self, device: str) -> list[dict[str, Any]]:
        """The HiPath CDRs of ``device`` (``GET /v1/cdrs?source=hipath``, every page)."""
        items: list[dict[str, Any]] = []
        cursor = None
        async with httpx.AsyncClient(base_url=self.direct, headers=AUTH) as client:
            while True:
                params = {"source": "hipath", "limit": "1000"}
                if cursor:
                    params["cursor"] = cursor
                page = (await client.get("/v1/cdrs", params=params)).raise_for_status().json()
                items += [c for c in page["items"] if c["origin_host"] == device]
                cursor = page["next_cursor"]
                if not cursor:
                    return items

    async def wait_cdrs(self, device: str, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            items = await self.cdrs_of(device)
            if len(items) >= n:
                return items
            if loop.time() > deadline:
                raise AssertionError(f"{len(items)} of {n} CDRs of {device} stored")
            await asyncio.sleep(0.1)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    data = tmp_path_factory.mktemp("platform")
    with environment(INGEST_TOKENS=TOKEN):
        app = create_allinone_app(
            data_dir=data,
            database_url=f"sqlite+aiosqlite:///{data / 'cdrflow.db'}",
            bus_url=f"memory://edge-{uuid.uuid4().hex}",
        )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "the platform did not start"
    gate = Gate(port)
    await gate.open()
    try:
        yield Platform(f"http://127.0.0.1:{gate.port}", f"http://127.0.0.1:{port}", gate)
    finally:
        await gate.close()
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def agent_settings(tmp: Path, platform: Platform, **more: Any) -> EdgeSettings:
    base = EdgeSettings(
        source="hipath-serial",
        data_dir=tmp / "edge",
        ingest_url=platform.url,
        token=TOKEN,
        device_id=f"t-{uuid.uuid4().hex[:12]}",
        pbx_timezone="Europe/Dublin",
        timeout_s=0.05,
        timeout_decay=1.5,
        max_timeout_s=0.4,
        request_timeout_s=5,
        checkin_interval_min=0.05,
        tcp_listen="127.0.0.1:0",
    )
    return replace(base, **more)


@dataclass
class Running:
    agent: Agent
    stop: asyncio.Event
    task: asyncio.Task[None]
    logs: list[str] = field(default_factory=list)

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@contextlib.asynccontextmanager
async def running(settings: EdgeSettings) -> AsyncIterator[Running]:
    agent = Agent(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    run = Running(agent, stop, task)
    try:
        yield run
    finally:
        if not task.done():
            await run.halt()
        elif not task.cancelled() and task.exception():
            raise task.exception()  # type: ignore[misc]


class Pty:
    """A pseudo-terminal standing in for /dev/ttyUSB0: ``path`` is a symlink to the slave
    (so the device can vanish and come back under the same name), ``write`` feeds the PBX side."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master = -1
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation before pyserial opens it
        name = os.ttyname(slave)
        os.close(slave)
        self.master = master
        tmp = self.path.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(name)
        tmp.replace(self.path)

    def unplug(self) -> None:
        """The USB adapter pulled: the device node is gone, the open port reads EIO."""
        self.path.unlink(missing_ok=True)
        os.close(self.master)
        self.master = -1

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def pty_port(tmp_path: Path) -> Iterator[Pty]:
    port = Pty(tmp_path / "ttyUSB0")
    yield port
    port.close()


def fixture_lines() -> list[bytes]:
    """The HiPath corpus as the PBX prints it: CR LF after each line, framing bytes kept."""
    return [line for line in FIXTURE.read_bytes().split(b"\n") if line.strip()]


async def until(check: Any, what: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
