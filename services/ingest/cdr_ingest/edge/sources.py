"""Where lines come from: a serial port, TCP connections, or a mock PBX.

A source is a class registered in the entry-point group ``cdrflow.edge_sources`` (this package
registers ``hipath-serial``, ``tcp`` and ``mock``); ``EDGE_SOURCE`` picks one by name. It is built
with the settings and a ``Sink`` and runs until cancelled, reopening its device as it needs to.
Its ``state`` (open / closed / error) and ``last_line_at`` go into every check-in.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Protocol
from zoneinfo import ZoneInfo

from cdr_ingest.edge.capture import LineSplitter
from cdr_ingest.edge.settings import BadSetting, EdgeSettings

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cdrflow.edge_sources"
READ_CHUNK = 4096
# Near a full queue reads shrink to about the lines that still fit (a HiPath line is 76-114
# bytes), so the queue overshoots EDGE_QUEUE_SIZE by a line or two at most, not by a chunk.
LINE_BYTES = 80


class Sink(Protocol):
    """Where a source puts its lines: ``capture`` commits them; ``room`` waits while the queue
    is full (the source stops reading, so the PBX's own buffer or flow control holds them)."""

    async def capture(self, lines: list[bytes]) -> None: ...

    async def room(self) -> None: ...

    def free(self) -> int:
        """Lines the queue can still take."""
        ...


class Source:
    name = "source"

    def __init__(self, settings: EdgeSettings, sink: Sink) -> None:
        self.settings = settings
        self.sink = sink
        self.state = "closed"
        self.error: str | None = None
        self.last_line_at: float | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def read_size(self) -> int:
        return max(LINE_BYTES, min(READ_CHUNK, self.sink.free() * LINE_BYTES))

    async def _lines(self, lines: list[bytes]) -> None:
        if lines:
            await self.sink.capture(lines)
            self.last_line_at = time.time()


class Backoff:
    """``TIMEOUT`` times ``TIMEOUT_DECAY`` per failure, up to ``MAX_TIMEOUT``; reset on success."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.first = settings.timeout_s
        self.decay = settings.timeout_decay
        self.maximum = settings.max_timeout_s
        self.next = self.first

    def reset(self) -> None:
        self.next = self.first

    def at_maximum(self) -> None:
        self.next = self.maximum

    def step(self, at_least: float = 0.0) -> float:
        delay = min(max(self.next, at_least), self.maximum)
        self.next = min(self.next * self.decay, self.maximum)
        return delay


class HipathSerial(Source):
    """A HiPath's V.24 call-charge output (``EDGE_SERIAL_*``), through pyserial-asyncio.

    The device is reopened with backoff when it disappears (a USB adapter unplugged) and comes
    back. While the queue is full nothing is read: the bytes wait in the port's buffer and, with
    RTS/CTS or XON/XOFF on, the PBX holds its output.
    """

    name = "hipath-serial"

    def describe(self) -> str:
        s = self.settings
        return (
            f"{self.name} {s.serial_port} {s.serial_baudrate} "
            f"{s.serial_bytesize}{s.serial_parity}{s.serial_stopbits:g}"
        )

    async def run(self) -> None:
        # Imported here: only this source needs them (no stubs are published for either).
        import serial  # type: ignore[import-untyped]
        import serial_asyncio  # type: ignore[import-untyped]

        s = self.settings
        backoff = Backoff(s)
        while True:
            try:
                reader, writer = await serial_asyncio.open_serial_connection(
                    url=s.serial_port,
                    baudrate=s.serial_baudrate,
                    bytesize=s.serial_bytesize,
                    parity=s.serial_parity,
                    stopbits=s.serial_stopbits,
                    xonxoff=s.serial_xonxoff,
                    rtscts=s.serial_rtscts,
                )
            except (serial.SerialException, OSError) as exc:
                self._failed(exc, backoff)
                await asyncio.sleep(backoff.step())
                continue
            self.state, self.error = "open", None
            log.info("serial port %s open", s.serial_port)
            backoff.reset()
            splitter = LineSplitter()
            try:
                while True:
                    await self.sink.room()
                    chunk = await reader.read(self.read_size())
                    if not chunk:
                        raise ConnectionError("the port reported end of file")
                    await self._lines(splitter.feed(chunk))
            except (serial.SerialException, OSError) as exc:
                await self._lines(splitter.flush())
                self._failed(exc, backoff)
            finally:
                writer.close()
            await asyncio.sleep(backoff.step())

    def _failed(self, exc: BaseException, backoff: Backoff) -> None:
        was_open = self.state == "open"
        self.state, self.error = "error", str(exc) or type(exc).__name__
        if was_open or backoff.next == backoff.first:
            log.warning(
                "serial port %s: %s; reopening with backoff (from %gs up to %gs)",
                self.settings.serial_port,
                self.error,
                backoff.first,
                backoff.maximum,
            )


class Tcp(Source):
    """HiPath 3000 pushing the same lines over the LAN as a TCP client (``EDGE_TCP_LISTEN``):
    one record per line, any number of PBXs connected at once, each with its own framing."""

    name = "tcp"

    def __init__(self, settings: EdgeSettings, sink: Sink) -> None:
        super().__init__(settings, sink)
        self.connections = 0
        self.port: int | None = None  # the bound port (EDGE_TCP_LISTEN may ask for 0)

    def describe(self) -> str:
        return f"{self.name} {self.settings.tcp_listen}"

    async def run(self) -> None:
        host, _, port = self.settings.tcp_listen.rpartition(":")
        server = await asyncio.start_server(self._serve, host.strip("[]") or None, int(port))
        self.port = server.sockets[0].getsockname()[1]
        self.state = "open"
        log.info("listening for PBX lines on %s (port %d)", self.settings.tcp_listen, self.port)
        async with server:
            await server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self.connections += 1
        log.info("PBX connected from %s", peer)
        splitter = LineSplitter()
        try:
            while True:
                await self.sink.room()
                chunk = await reader.read(self.read_size())
                if not chunk:
                    break
                await self._lines(splitter.feed(chunk))
            await self._lines(splitter.flush())
        except (ConnectionError, OSError) as exc:
            await self._lines(splitter.flush())
            log.warning("PBX connection from %s failed: %s", peer, exc)
        finally:
            self.connections -= 1
            writer.close()
            log.info("PBX at %s disconnected", peer)


class Mock(Source):
    """Plausible HiPath lines at ``EDGE_MOCK_RATE`` calls per minute, for demos: answered and
    missed incoming calls (with their ring notices), outgoing calls, on a few trunks."""

    name = "mock"

    def __init__(
        self,
        settings: EdgeSettings,
        sink: Sink,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(settings, sink)
        tz = ZoneInfo(settings.pbx_timezone)
        self.clock = clock or (lambda: datetime.now(tz))
        self.sleep = sleep
        self.rng = random.Random()

    def describe(self) -> str:
        return f"{self.name} {self.settings.mock_rate:g}/min"

    async def run(self) -> None:
        self.state = "open"
        rate = self.settings.mock_rate
        if rate <= 0:
            await asyncio.Event().wait()
        while True:
            await self.sleep(self.rng.expovariate(rate / 60.0))
            await self.sink.room()
            await self._lines(mock_call(self.rng, self.clock()))


def hipath_line(
    end: datetime,
    trunk: str,
    extension: str,
    ring_s: int | None,
    talk_s: int | None,
    number: str,
    units: int | None,
    call_type: int,
) -> bytes:
    """One compressed call-charge line in the column layout of the Siemens service manual."""
    ring = "" if ring_s is None else f"{ring_s // 60:02d}:{ring_s % 60:02d}"
    talk = ""
    if talk_s is not None:
        talk = f"{talk_s // 3600:02d}:{talk_s // 60 % 60:02d}:{talk_s % 60:02d}"
    text = (
        end.strftime("%d.%m.%y%H:%M:%S")
        + f"{trunk:>3}{extension:>6}{ring:>5}{talk:>8}{number:<25}"
        + ("" if units is None else str(units)).rjust(11)
        + f"{call_type:>2}"
    )
    return text.encode("ascii")


def mock_call(rng: random.Random, now: datetime) -> list[bytes]:
    """The lines one mock call prints: a ring notice for incoming ones, then the record."""
    trunk = str(rng.randint(1, 4))
    ext = str(rng.choice([100, 101, 102, 103, 104, 110, 117, 250, 251]))
    number = "0" + "".join(rng.choice("0123456789") for _ in range(rng.randint(8, 10)))
    kind = rng.random()
    if kind < 0.5:  # incoming: ring notice while ringing, then the record when it ends
        ring = rng.randint(1, 25)
        answered = rng.random() < 0.8
        talk = rng.randint(3, 600) if answered else 0
        end = now
        notice = hipath_line(end - timedelta(seconds=talk), trunk, ext, None, None, number, None, 0)
        record = hipath_line(end, trunk, ext, ring, talk if answered else 0, number, None, 1)
        return [notice, record]
    talk = rng.randint(1, 900)
    units = rng.randint(0, 40)
    return [hipath_line(now, trunk, ext, None, talk, number, units, 2)]


BUILTIN: dict[str, type[Source]] = {"hipath-serial": HipathSerial, "tcp": Tcp, "mock": Mock}


def source_class(name: str) -> type[Source]:
    """The source registered under ``name`` in ``cdrflow.edge_sources``."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in found:
        cls = found[name].load()
        if not (isinstance(cls, type) and issubclass(cls, Source)):
            raise BadSetting(f"EDGE_SOURCE={name!r}: {found[name].value} is not an edge Source")
        return cls
    if name in BUILTIN:  # running from a source tree that was not installed
        return BUILTIN[name]
    known = ", ".join(sorted(set(found) | set(BUILTIN)))
    raise BadSetting(f"EDGE_SOURCE={name!r} is not a known source; known: {known}")
