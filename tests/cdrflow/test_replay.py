"""``cdrflow replay``: saved FreeSWITCH files re-sent to a real ingest over HTTP, and retained raw
payloads re-published from the store; replaying twice changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from sqlalchemy import select

from bench.common import free_port
from cdr_parser.models import cdrs, raw_payloads
from cdrflow.platform import create_allinone_app
from cdrflow.replay import replay_from_store, replay_paths
from cdrkit.db import create_engine
from cdrkit.settings import ServiceSettings, load

ROOT = Path(__file__).resolve().parents[2]
A_LEG = "91353230-461f-11de-aa7f-b10b4edc0c92"  # tinycdr 2009, posted by the switch as a_<uuid>
B_LEG = "26444af2-5f94-40b5-9578-824ce7c75ab8"  # ccm-client incoming call: <originator> profile
JSON_LEG = "3da8bf84-c133-4959-9e24-e72875cb33a1"  # mod_json_cdr (cgrates)
BROKEN = "0006a2fa-b032-43e8-9d70-708f363fe3b7"


def switch_dirs(root: Path, fixtures_dir: Path) -> Path:
    """A FreeSWITCH log-dir with an err-log-dir below it, as mod_xml_cdr/mod_json_cdr name files."""
    fs = fixtures_dir / "freeswitch"
    logs, err = root / "xml_cdr", root / "xml_cdr" / "errors"
    err.mkdir(parents=True)
    (logs / f"a_{A_LEG}.cdr.xml").write_bytes(
        (fs / "freeswitch_xml_cdr_tinycdr_2009_originator_cancel.cdr.xml").read_bytes()
    )
    (err / f"{B_LEG}.cdr.xml").write_bytes(
        (fs / "freeswitch_xml_cdr_ccm_client_incoming-call-cdr.xml").read_bytes()
    )
    (logs / f"{JSON_LEG}.cdr.json").write_bytes(
        (fs / "freeswitch_json_cdr_cgrates_answered.json").read_bytes()
    )
    # Truncated while the switch was writing it.
    error_call = (fs / "freeswitch_xml_cdr_ccm_client_error-call-cdr.xml").read_bytes()
    (err / f"a_{BROKEN}.cdr.xml").write_bytes(error_call[: len(error_call) // 2])
    (logs / "README.txt").write_text("not a CDR\n")
    return logs


@contextmanager
def serve_http(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free port in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


async def wait_stored(url: str, call_ids: list[str], timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            answers = [await client.get(f"/v1/cdrs/{cid}") for cid in call_ids]
            if all(a.status_code == 200 for a in answers):
                return [a.json() for a in answers]
            assert time.monotonic() < deadline, [a.status_code for a in answers]
            await asyncio.sleep(0.05)


def run_cli(
    *args: str, env: dict[str, str] | None = None, tty: bool = False
) -> subprocess.CompletedProcess[str]:
    """``cdrflow replay …``; with ``tty`` its stderr is a real pseudo-terminal."""
    master, slave = pty.openpty() if tty else (-1, -1)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cdrflow", "replay", *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=slave if tty else subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
        if tty:
            os.close(slave)
            chunks = []
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other side is closed and drained
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            done.stderr = b"".join(chunks).decode()
        return done
    finally:
        if tty:
            os.close(master)


async def test_replay_directory_stores_cdrs_then_says_duplicate(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    logs = switch_dirs(tmp_path / "switch", fixtures_dir)
    app = create_allinone_app(data_dir=tmp_path / "data", bus_url=f"memory://{uuidlib.uuid4()}")
    with serve_http(app) as url:
        first = await replay_paths([logs], url=url, concurrency=3)
        assert (first.total, first.accepted, first.duplicate, first.failed) == (4, 3, 0, 1)
        assert first.reasons() == [("HTTP 400 not_well_formed", 1)]
        assert first.failures[0].item == str(logs / "errors" / f"a_{BROKEN}.cdr.xml")
        assert first.skipped == [str(logs / "README.txt")]

        a_leg, b_leg, json_leg = await wait_stored(url, [A_LEG, B_LEG, JSON_LEG])
        assert a_leg["leg"] == "a"
        assert a_leg["callee_number"] == "2622"
        assert b_leg["leg"] == "b"
        assert json_leg["source"] == "freeswitch"

        # The second run goes through the command line: same files, nothing new.
        report = tmp_path / "report.json"
        done = run_cli(str(logs), "--url", url, "--report", str(report))
        assert done.returncode == 1, done.stderr  # the broken file still fails
        assert "replay [" not in done.stderr  # no progress bar when stderr is not a terminal
        assert "accepted   0" in done.stdout
        assert "duplicate  3" in done.stdout
        assert "1  HTTP 400 not_well_formed" in done.stdout
        data = json.loads(report.read_text())
        assert (data["accepted"], data["duplicate"], data["failed"], data["skipped"]) == (
            0,
            3,
            1,
            1,
        )
        assert data["failures"] == [
            {
                "file": str(logs / "errors" / f"a_{BROKEN}.cdr.xml"),
                "reason": "HTTP 400 not_well_formed",
                "detail": data["failures"][0]["detail"],
            }
        ]
        assert data["failures"][0]["detail"]
        on_tty = run_cli(str(logs), "--url", url, tty=True)
        assert on_tty.returncode == 1
        # rich's bar: the last frame shows every file done, the percentage and the failure
        plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", on_tty.stderr)
        assert re.search(r"replay \S*━\S* 4/4 100%", plain), plain
        assert "failed 1" in plain
        async with httpx.AsyncClient(base_url=url) as client:
            page = (await client.get("/v1/cdrs", params={"limit": 50})).json()
        assert sorted(c["call_id"] for c in page["items"]) == sorted([A_LEG, B_LEG, JSON_LEG])


class Flaky:
    """A real HTTP front that answers 503 to its first ``failures`` posts, then proxies."""

    def __init__(self, upstream: str | None, failures: int) -> None:
        self.upstream = upstream
        self.failures = failures
        self.seen = 0
        self.authorization: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen += 1
        self.authorization = dict(scope["headers"]).get(b"authorization")
        if self.seen <= self.failures or self.upstream is None:
            status, answer = 503, b'{"error": "unavailable", "detail": "try later"}'
        else:
            async with httpx.AsyncClient() as client:
                resp = await client.post(
                    f"{self.upstream}{scope['path']}?{scope['query_string'].decode()}",
                    content=body,
                    headers={"content-type": dict(scope["headers"])[b"content-type"].decode()},
                )
            status, answer = resp.status_code, resp.content
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": answer})


async def test_replay_retries_503_and_connection_errors_then_gives_up(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    logs = switch_dirs(tmp_path / "switch", fixtures_dir)
    one = logs / f"a_{A_LEG}.cdr.xml"
    app = create_allinone_app(data_dir=tmp_path / "data", bus_url=f"memory://{uuidlib.uuid4()}")
    with serve_http(app) as ingest:
        flaky = Flaky(ingest, failures=2)
        with serve_http(flaky) as front:
            summary = await replay_paths([one], url=front, retries=3, backoff_s=0.01)
        assert (summary.accepted, summary.failed) == (1, 0)
        assert flaky.seen == 3  # two 503s, then the proxied post
        [stored] = await wait_stored(ingest, [A_LEG])
        assert stored["leg"] == "a"

    always = Flaky(None, failures=0)
    with serve_http(always) as front:
        summary = await replay_paths([one], url=front, retries=2, backoff_s=0.01, token="s3cret")
    assert always.seen == 3  # bounded: the first try and two retries
    assert always.authorization == b"Bearer s3cret"
    assert summary.reasons() == [("HTTP 503 unavailable", 1)]

    nobody = f"http://127.0.0.1:{free_port()}"
    summary = await replay_paths([one, tmp_path / "nope"], url=nobody, retries=1, backoff_s=0.01)
    assert summary.total == 2
    assert dict(summary.reasons()) == {"connection error (ConnectError)": 1, "not found": 1}


def _snapshot_sql() -> Any:
    return (
        select(cdrs.c.call_id, cdrs.c.stored_at).order_by(cdrs.c.call_id),
        select(
            raw_payloads.c.call_id, raw_payloads.c.envelope_id, raw_payloads.c.stored_at
        ).order_by(raw_payloads.c.call_id),
    )


async def _snapshot(db_url: str) -> tuple[list[Any], list[Any]]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            q_cdrs, q_raw = _snapshot_sql()
            return list((await conn.execute(q_cdrs)).all()), list((await conn.execute(q_raw)).all())
    finally:
        await engine.dispose()


def _parser_duplicates() -> float:
    return REGISTRY.get_sample_value("cdrflow_parser_cdrs_total", {"outcome": "duplicate"}) or 0.0


@pytest.mark.integration
async def test_replay_twice_from_files_and_store_changes_nothing(
    tmp_path: Path, fixtures_dir: Path, fresh_pg_url: str, fresh_tansu: Any
) -> None:
    logs = switch_dirs(tmp_path / "switch", fixtures_dir)
    common = {"database_url": fresh_pg_url, "bus_url": fresh_tansu.url, "data_dir": tmp_path}
    app = create_allinone_app(**common)
    with serve_http(app) as url:
        first = await replay_paths([logs], url=url)
        assert (first.accepted, first.duplicate, first.failed) == (3, 0, 1)
        await wait_stored(url, [A_LEG, B_LEG, JSON_LEG], timeout=60)
        before = await _snapshot(fresh_pg_url)
        assert [r.call_id for r in before[0]] == sorted([A_LEG, B_LEG, JSON_LEG])
        assert [r.call_id for r in before[1]] == sorted([A_LEG, B_LEG, JSON_LEG])

        again = await replay_paths([logs], url=url)
        assert (again.accepted, again.duplicate, again.failed) == (0, 3, 1)

        settings = load(ServiceSettings, **common)
        for run in range(2):
            seen = _parser_duplicates()
            if run == 0:
                summary = await replay_from_store(
                    datetime_epoch(), None, settings=settings, retries=2
                )
                assert (summary.total, summary.accepted, summary.failed) == (3, 3, 0)
                assert summary.stopped is None
            else:  # the command line, configured like a deployed service
                env = {"CDRFLOW_DATABASE_URL": fresh_pg_url, "CDRFLOW_BUS_URL": fresh_tansu.url}
                done = run_cli("--from-store", "--since", "2000-01-01T00:00:00Z", env=env)
                assert done.returncode == 0, done.stderr
                assert "replayed 3 stored payloads" in done.stdout
                assert "accepted   3" in done.stdout
            deadline = time.monotonic() + 60
            while _parser_duplicates() < seen + 3:  # the parser consumed all three again
                assert time.monotonic() < deadline, "the parser did not consume the replay"
                await asyncio.sleep(0.05)
        assert await _snapshot(fresh_pg_url) == before

        # A window that holds nothing replays nothing.
        empty = await replay_from_store(
            datetime_epoch(4_000_000_000), None, settings=settings, retries=0
        )
        assert (empty.total, empty.accepted, empty.failed) == (0, 0, 0)


def datetime_epoch(seconds: float = 0) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)
