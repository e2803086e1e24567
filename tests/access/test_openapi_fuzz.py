"""The OpenAPI document is honest: schemathesis (examples, coverage, fuzzing and stateful phases,
following the document's links) against the all-in-one process, on SQLite and on PostgreSQL, finds
no 5xx, no undocumented status or content type, no answer that breaks its schema, no wrong
``Allow`` and no operation that needs a token answering without one (``ignored_auth``: it fails
when a role dependency is taken off a route). The budget is ``CDRFLOW_FUZZ_SECONDS`` (default
40) per database."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cdrkit.testing.processes import spawn, stop
from tests.access.conftest import API_TOKENS, TOKENS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "freeswitch"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "allow_header_conformance",
        "unsupported_method",
        "ignored_auth",
    ]
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cdrflow.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the all-in-one process exited"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the all-in-one process was not ready in {timeout} s")


def _seed(base: str) -> None:
    """Real CDRs first, so the stateful phase's links (a listed call id → its CDR, raw document,
    charge, recording) lead to something."""
    for doc in sorted(FIXTURES.glob("freeswitch_*")):
        if doc.suffix not in (".xml", ".json"):
            continue
        kind = "application/json" if doc.suffix == ".json" else "text/xml"
        r = httpx.post(f"{base}/v1/cdr", content=doc.read_bytes(), headers={"content-type": kind})
        assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {TOKENS['read']}"}
    deadline = time.monotonic() + 30
    while not httpx.get(f"{base}/v1/cdrs", headers=headers).json()["items"]:
        assert time.monotonic() < deadline, "the seeded CDRs were never stored"
        time.sleep(0.2)


def test_schemathesis_finds_nothing(database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CDRFLOW_DATA_DIR": str(tmp_path / "data"),
        "CDRFLOW_DATABASE_URL": database_url,
        "CDRFLOW_BUS_URL": "memory://fuzz",
        "CDRFLOW_API_TOKENS": API_TOKENS,
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "cdrflow.platform:create_allinone_app"]
    server = spawn(
        [
            *uvicorn,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("wb"),
    )
    try:
        _wait_ready(base, server)
        _seed(base)
        seconds = os.environ.get("CDRFLOW_FUZZ_SECONDS", "40")
        command = [
            *(str(Path(sys.executable).with_name("st")), "run", f"{base}/openapi.json"),
            *("-H", f"Authorization: Bearer {TOKENS['admin']}", "--checks", CHECKS),
            *("--max-examples", "10", "--workers", "1", "--request-timeout", "15"),
            *("--max-time", seconds, "--seed", "12", "--no-color"),
        ]
        run = subprocess.run(
            command,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=int(seconds) + 120,
            check=False,
        )
    finally:
        stop(server)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    tested = re.search(r"Tested: (\d+)", out)
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert tested, out[-3000:]
    assert cases, out[-3000:]
    assert int(tested[1]) >= 25  # every documented operation
    assert cases[1] == cases[2]
    backend = database_url.split(":", 1)[0]
    print(f"schemathesis ({backend}): {tested[1]} operations, {cases[1]} cases, 0 failures")
