"""Real PostgreSQL for tests: a database of our own, created and dropped.

The server and the role that creates the databases come from ``CDRFLOW_TEST_PG_ADMIN`` (one
``postgresql://user:password@host:port/database`` URL) or else from libpq's ``PGHOST``, ``PGPORT``,
``PGUSER``, ``PGPASSWORD`` and ``PGDATABASE`` (defaults: ``postgres`` without a password on
127.0.0.1:5432, the ``postgres`` database). When that login fails the test session stops at once
with one sentence saying what to set.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from cdrkit.testing.processes import forget_postmaster, watch_postmaster

# What the session exits with when the database cannot be logged in to (pytest's own codes are
# 0-5; 3 is "internal error", 4 "usage error"): a set-up problem, not a failed test.
SETUP_EXIT_CODE = 4

WHAT_TO_SET = (
    "set PGHOST, PGPORT, PGUSER and PGPASSWORD (or one CDRFLOW_TEST_PG_ADMIN="
    "postgresql://user:password@host:port/postgres URL) to a role that may create databases, "
    "or run `make services` to start the local cluster"
)


def admin_dsn(env: Mapping[str, str] | None = None) -> str:
    """The libpq URL the tests log in with to create and drop their databases."""
    env = os.environ if env is None else env
    if env.get("CDRFLOW_TEST_PG_ADMIN"):
        return env["CDRFLOW_TEST_PG_ADMIN"]
    host = env.get("PGHOST") or "127.0.0.1"
    if host.startswith("/"):  # a Unix-socket directory: libpq's ?host= form
        netloc, query = "", f"?host={quote(host, safe='/')}"
    else:
        netloc = f"[{host}]" if ":" in host else host
        query = ""
    port = env.get("PGPORT") or "5432"
    user = quote(env.get("PGUSER") or "postgres", safe="")
    password = env.get("PGPASSWORD")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    database = quote(env.get("PGDATABASE") or "postgres", safe="")
    hostport = f"{netloc}:{port}" if netloc else ""
    return f"postgresql://{auth}@{hostport}/{database}{query}"


ADMIN_DSN = admin_dsn()


def _shown(dsn: str) -> str:
    """The DSN without its password, for messages."""
    head, sep, tail = dsn.partition("@")
    if not sep or "://" not in head:
        return dsn
    scheme, _, userinfo = head.partition("://")
    return f"{scheme}://{userinfo.split(':', 1)[0]}@{tail}"


class LoginFailed(RuntimeError):
    """PostgreSQL cannot be reached or refused the login: a set-up problem, not a test failure."""


_LOGIN_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InvalidAuthorizationSpecificationError,  # bad password, no such role, pg_hba reject
    asyncpg.InvalidCatalogNameError,  # no such database to log in to
    asyncpg.CannotConnectNowError,  # starting up / shutting down
    asyncpg.InsufficientPrivilegeError,  # a role that may not create databases
)


async def _admin(sql: str) -> None:
    try:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    except _LOGIN_ERRORS as exc:
        raise LoginFailed(
            f"cannot log in to PostgreSQL as {_shown(ADMIN_DSN)} ({exc or type(exc).__name__}): "
            f"{WHAT_TO_SET}."
        ) from exc
    try:
        await conn.execute(sql)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise LoginFailed(
            f"PostgreSQL role in {_shown(ADMIN_DSN)} may not create databases ({exc}): "
            f"{WHAT_TO_SET}."
        ) from exc
    finally:
        await conn.close()


async def terminate_backend(dsn: str, pid: int) -> None:
    """End server session ``pid`` from another connection (``pg_terminate_backend``), as an
    operator or a failover does: its client sees the server close the connection."""
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


def create_database(prefix: str = "cdrflow_test") -> str:
    """Create an empty database; return its SQLAlchemy URL.

    Raises ``LoginFailed`` (one sentence saying what to set) when the server cannot be logged in to.
    """
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    rest = ADMIN_DSN.partition("://")[2]
    authority, _, path = rest.partition("/")
    query = path.partition("?")[2]
    url = f"postgresql+asyncpg://{authority}/{name}"
    return f"{url}?{query}" if query else url


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1].partition("?")[0]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _create_or_fail() -> str:
    try:
        return create_database()
    except LoginFailed as exc:
        # Every later database test would fail the same way: stop the session with the sentence.
        pytest.exit(str(exc), returncode=SETUP_EXIT_CODE)
    except asyncpg.PostgresError as exc:
        pytest.fail(f"cannot create a test database on {_shown(ADMIN_DSN)}: {exc}", pytrace=False)


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
        # pg_ctl daemonises the postmaster: the watchdog stops it (through postmaster.pid) if
        # pytest dies before stop().
        watch_postmaster(self.data)
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        if self._initialised and (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        forget_postmaster(self.data)

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
