"""The ``cdrflow`` command: help shows each option's default and environment variable, and which
database and bus a command will touch (resolved from the environment, passwords hidden); commands
say so again when they start; alembic is quiet at INFO."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdrflow.cli import cli, shown

ROOT = Path(__file__).resolve().parents[2]


def _help(*args: str, **env: str | None) -> str:
    result = CliRunner().invoke(
        cli, [*args, "--help"], env=env, terminal_width=400, max_content_width=400
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_run_help_shows_defaults_env_vars_and_what_it_touches(tmp_path: Path) -> None:
    out = _help("run", CDRFLOW_DATA_DIR=str(tmp_path), CDRFLOW_DATABASE_URL=None)
    assert "[env var: CDRFLOW_PORT; default: 8000]" in out
    assert "[env var: CDRFLOW_HOST; default: 127.0.0.1]" in out
    assert "env var: CDRFLOW_MOCK_RATE; default: 0.0" in out
    assert f"database  sqlite+aiosqlite:///{tmp_path.resolve()}/cdrflow.db" in out
    bus = f"memory://?dir={tmp_path.resolve()}/bus&partitions=1"
    assert f"bus       {bus}  (in this process)" in out


@pytest.mark.parametrize("command", ["migrate", "rerate", "serve"])
def test_help_names_the_configured_database_and_bus_without_passwords(command: str) -> None:
    out = _help(
        command,
        CDRFLOW_DATABASE_URL="postgresql+asyncpg://cdr:s3cret-pw@db.internal:5432/cdrflow",
        CDRFLOW_BUS_URL="kafka://kafka-1:9092?sasl_password=k4fka-pw&idempotence=false",
    )
    assert "postgresql+asyncpg://cdr:***@db.internal:5432/cdrflow  (CDRFLOW_DATABASE_URL)" in out
    if command != "migrate":
        assert "kafka://kafka-1:9092?sasl_password=***&idempotence=false" in out
    else:
        assert "kafka://" not in out  # migrate touches no bus
    assert "s3cret-pw" not in out
    assert "k4fka-pw" not in out


def test_a_bad_setting_is_named_in_help_instead_of_a_traceback() -> None:
    out = _help("migrate", CDRFLOW_DATABASE_URL="mysql://nope")
    assert "CDRFLOW_DATABASE_URL: Value error, must start with postgresql+asyncpg://" in out


def test_shown_hides_only_secrets() -> None:
    assert shown("sqlite+aiosqlite:////var/lib/cdrflow/cdrflow.db") == (
        "sqlite+aiosqlite:////var/lib/cdrflow/cdrflow.db"
    )
    assert shown("postgresql+asyncpg://u:p%40ss@h/db?ssl=require") == (
        "postgresql+asyncpg://u:***@h/db?ssl=require"
    )
    assert shown("s3://b/p?endpoint_url=http://m:9000&secret_key=x&region=eu") == (
        "s3://b/p?endpoint_url=http://m:9000&secret_key=***&region=eu"
    )


def test_invalid_mock_rate_is_refused() -> None:
    result = CliRunner().invoke(cli, ["run"], env={"CDRFLOW_MOCK_RATE": "lots"})
    assert result.exit_code == 2
    assert "'lots'" in result.output
    assert "Invalid value for '--mock-rate'" in result.output


def test_migrate_says_which_database_and_alembic_is_quiet(tmp_path: Path) -> None:
    env = {**os.environ, "CDRFLOW_DATA_DIR": str(tmp_path), "CDRFLOW_LOG_FORMAT": "text"}
    env.pop("CDRFLOW_DATABASE_URL", None)
    env.pop("CDRFLOW_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "cdrflow", "migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert first == (
        f"cdrflow migrate: database sqlite+aiosqlite:///{tmp_path.resolve()}/cdrflow.db  "
        "(SQLite in CDRFLOW_DATA_DIR)"
    )
    assert done.stdout.split() == [
        "parser:",
        "migrated",
        "billing:",
        "migrated",
        "stats:",
        "migrated",
        "recordings:",
        "migrated",
    ]
    assert "setup plugin" not in done.stderr
    assert "Context impl" not in done.stderr
    assert "Will assume" not in done.stderr
    assert "Running upgrade  -> 0001" in done.stderr  # schema changes are still logged


def test_run_freezes_what_startup_made_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cdrflow run`` hands uvicorn an app whose startup objects the cyclic collector no longer
    walks (its full passes stop the one event loop; docs/performance.md, fifth round)."""
    import gc

    import cdrflow.cli as cli_module

    frozen: list[int] = []
    monkeypatch.setattr(
        cli_module, "_serve", lambda app, host, port: frozen.append(gc.get_freeze_count())
    )
    gc.unfreeze()
    try:
        result = CliRunner().invoke(
            cli,
            ["run", "--port", "18999"],
            env={
                "CDRFLOW_DATA_DIR": str(tmp_path),
                "CDRFLOW_DATABASE_URL": None,
                "CDRFLOW_BUS_URL": None,
            },
        )
        assert result.exit_code == 0, result.output
    finally:
        gc.unfreeze()
    assert len(frozen) == 1
    assert frozen[0] > 10_000  # the modules and the apps, not a handful of objects
