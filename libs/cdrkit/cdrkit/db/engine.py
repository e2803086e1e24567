from __future__ import annotations

import json
import time
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

_DEFAULT = json.JSONEncoder().default  # json.dumps's: TypeError for what JSON cannot hold


def dumps_json(value: Any) -> str:
    """``json.dumps(value)`` with its default arguments: the same text and the same errors, ~1 µs
    less a call (issue 15, fifth round). json.dumps goes through ``JSONEncoder.encode`` and
    ``iterencode``, which build this same C encoder (a fresh circular-reference map each call,
    as here) after a few Python-level steps; this builds it directly. The engines' JSON columns
    (the parser's ``extra``, billing's ``explanation``) and billing's ``cdr.rated`` messages
    use it; ``tests/cdrkit/test_db_json.py`` holds it to json.dumps."""
    if c_make_encoder is None:  # pragma: no cover - CPython always has the C accelerator
        return json.dumps(value)
    encode = c_make_encoder(
        {}, _DEFAULT, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return "".join(encode(value, 0))


# A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
PING_IDLE_S = 1.0


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine with settings that suit each backend.

    SQLite (the embedded mode) runs in WAL mode with a busy timeout, so the API can read while a
    consumer writes; PostgreSQL gets a bounded pool whose checkout checks the connection first
    (``_check_on_checkout``) so a restarted server is noticed on the next checkout instead of
    failing a request.
    """
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = _create_async_engine(url, connect_args={"timeout": 30}, json_serializer=dumps_json)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = _create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        json_serializer=dumps_json,
    )
    event.listen(engine.sync_engine, "connect", _checked_in)  # fresh: no ping needed
    event.listen(engine.sync_engine, "checkin", _checked_in)
    event.listen(engine.sync_engine, "checkout", _check_on_checkout)
    return engine


def _checked_in(_dbapi_conn: Any, record: Any) -> None:
    """Note when a connection was last connected or given back (``_check_on_checkout``)."""
    record.info["idle_since"] = time.monotonic()


def _check_on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """SQLAlchemy's ``pool_pre_ping``, without its round trips on a connection in steady use.

    The pre-ping cost three round trips on asyncpg (BEGIN, ``;``, ROLLBACK) on every checkout,
    i.e. on every consumed batch of the sinks and the parser (issue 15, sixth round). A server
    that restarts or ends the session closes the socket, which asyncpg sees without any I/O
    (``is_closed``); a connection idle for more than ``PING_IDLE_S`` (a network that dropped
    it silently, a failover) still gets the full ping. Either failure makes the pool discard
    the connection and check out another (``DisconnectionError``), as the pre-ping did; a
    connection that dies during the second after its last use fails its statement, which the
    consumers retry as a transient error."""
    driver = getattr(dbapi_conn, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the database closed the connection")
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since > PING_IDLE_S:
        try:
            dbapi_conn.ping()
        except Exception as exc:
            raise DisconnectionError(f"the connection failed its ping: {exc}") from exc


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


# SQLSTATEs that say "not now" rather than "not this": the connection (class 08), the server
# shutting down or starting (57P01-57P03), too many connections, and a transaction the server
# chose to abort (serialization failure, deadlock) that succeeds when run again.
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean "the database is unreachable right now", not "bad data".

    Also for asyncpg's own errors, which reach the caller unwrapped when a service talks to the
    driver connection directly (billing's and stats' batches): a session the server ended
    (``AdminShutdownError``, then ``InterfaceError('connection is closed')``), a connection lost
    mid-query (``ConnectionDoesNotExistError``, SQLSTATE 08003)."""
    if isinstance(exc, OperationalError | SAInterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state is not None and (state.startswith("08") or state in _TRANSIENT_SQLSTATES):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return True
    return isinstance(exc, ConnectionError | OSError | TimeoutError)


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of an asyncpg error, bare or wrapped by SQLAlchemy (``orig``)."""
    for candidate in (exc, getattr(exc, "orig", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None
