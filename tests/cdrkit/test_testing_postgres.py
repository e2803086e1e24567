"""The test database login: PG* variables (or one admin URL) are honoured, and a failed login stops
the session at once with one sentence saying what to set."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from cdrkit.testing.postgres import SETUP_EXIT_CODE, admin_dsn
from tests.inner_pytest import inner_pytest_command

TWO_DATABASE_TESTS = """
def test_first(fresh_pg_url):
    pass

def test_second(fresh_pg_url):
    pass
"""


def test_admin_dsn_defaults_to_the_local_postgres_role() -> None:
    assert admin_dsn({}) == "postgresql://postgres@127.0.0.1:5432/postgres"


def test_admin_dsn_from_libpq_variables() -> None:
    env = {
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "cdr admin",
        "PGPASSWORD": "p@ss:/word",
        "PGDATABASE": "template1",
    }
    assert admin_dsn(env) == "postgresql://cdr%20admin:p%40ss%3A%2Fword@db.example:6543/template1"


def test_admin_dsn_unix_socket_and_one_url_wins() -> None:
    assert admin_dsn({"PGHOST": "/run/postgresql"}) == (
        "postgresql://postgres@/postgres?host=/run/postgresql"
    )
    url = "postgresql://ci:secret@10.0.0.5:5433/postgres"
    assert admin_dsn({"CDRFLOW_TEST_PG_ADMIN": url, "PGPORT": "1"}) == url


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_two.py").write_text(TWO_DATABASE_TESTS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    clean.pop("CDRFLOW_TEST_PG_ADMIN", None)
    return subprocess.run(
        inner_pytest_command(tmp_path / "test_two.py"),
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"PGPORT": "closed"}, id="nothing-listening"),
        pytest.param({"PGUSER": "no_such_role_cdrflow"}, id="unknown-role"),
    ],
)
def test_failed_login_stops_the_session_with_what_to_set(
    tmp_path: Path, env: dict[str, str]
) -> None:
    if env.get("PGPORT") == "closed":  # with a password, which the sentence must not show
        env = {"PGPORT": str(_closed_port()), "PGPASSWORD": "hunter2-secret"}
    done = _run_pytest(tmp_path, **env)
    out = done.stdout + done.stderr
    assert done.returncode == SETUP_EXIT_CODE, out
    assert "cannot log in to PostgreSQL as postgresql://" in out, out
    assert "set PGHOST, PGPORT, PGUSER and PGPASSWORD (or one CDRFLOW_TEST_PG_ADMIN=" in out, out
    # At once: the first database test stops the session; the second never runs into the wall.
    assert "test_second" not in out, out
    assert "no tests ran" in out, out
    assert "no_such_role_cdrflow" in out or env.get("PGPORT", "") in out
    assert "hunter2-secret" not in out
