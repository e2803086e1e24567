"""Real PostgreSQL for tests: a database of our own on 127.0.0.1:5432, created and dropped."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("CDRFLOW_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(prefix: str = "cdrflow_test") -> str:
    """Create an empty database; return its SQLAlchemy URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL at {ADMIN_DSN} is not usable ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        ) from exc
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _create_or_fail() -> str:
    try:
        return create_database()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the test session, dropped afterwards."""
    url = _create_or_fail()
    yield url
    drop_database(url)


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test."""
    url = _create_or_fail()
    yield url
    drop_database(url)


class PrivateCluster:
    """A PostgreSQL cluster of the test's own (initdb + pg_ctl) on a free loopback port, for
    tests that stop or restart the database; the machine's cluster on :5432 is never touched.

    Trust authentication, no fsync (a test cluster, not a durable one). ``initdb`` refuses to run
    as root, so as root every command runs as the ``postgres`` user (``runuser``) in a temp dir
    owned by it. ``stop()``/``start()``/``restart()`` keep the data directory and port.
    """

    def __init__(self, *, bin_dir: str | None = None, port: int | None = None) -> None:
        self.bin_dir = Path(bin_dir) if bin_dir else self.find_bin_dir()
        self.port = port or _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cdrflow-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._initialised = False

    @staticmethod
    def find_bin_dir() -> Path:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        if found:
            return found[-1].parent
        initdb = shutil.which("initdb")
        if initdb:
            return Path(initdb).parent
        raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        cmd = [*self._as, str(self.bin_dir / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout)[-2000:]}\n{self.log_tail()}"
            )

    def log_tail(self, max_chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of a database in this cluster."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if not self._initialised:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N")
            self._initialised = True
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        if self._initialised and (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str = "cdrflow") -> str:
        """Create a database; return its SQLAlchemy URL."""

        async def create() -> None:
            conn = await asyncpg.connect(self.admin_dsn(), timeout=10)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.url(name)

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of the test's own, which the test may stop and restart."""
    cluster = PrivateCluster()
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        cluster.cleanup()
        pytest.fail(f"cannot start a private PostgreSQL cluster: {exc}", pytrace=False)
    yield cluster
    cluster.cleanup()
