"""Pull and event sink into the all-in-one platform: one CDR per participant, linked to its
conference; the `cdrflow pexip pull` command's exit status and sentence."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdr_ingest.pexip.puller import Puller
from cdr_ingest.pexip.records import RecordType
from cdrflow.pexip_cli import pull_command
from cdrflow.platform import create_allinone_app
from cdrkit.testing.processes import spawn, stop
from tests.e2e.conftest import serving, wait_for
from tests.pexip.conftest import settings_for
from tests.pexip.fakenode import FIXTURES, Certs, FakeNode, make_history

UNTIL = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def sink_disconnect(participant: dict[str, Any]) -> dict[str, Any]:
    """The 2019 event-sink push, rewritten for one of the fake node's participants."""
    message: dict[str, Any] = copy.deepcopy(
        json.loads((FIXTURES / "pexip_eventsink_events_2019.json").read_text())[1]
    )
    start = dt.datetime.fromisoformat(participant["start_time"]).replace(tzinfo=dt.UTC)
    end = dt.datetime.fromisoformat(participant["end_time"]).replace(tzinfo=dt.UTC)
    message["time"] = end.timestamp()
    message["data"].update(
        uuid=participant["id"],
        call_id=participant["call_uuid"],
        conference=participant["conference_name"],
        connect_time=start.timestamp(),
    )
    return message


async def pexip_cdrs(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    resp = await client.get("/v1/cdrs", params={"source": "pexip", "limit": "1000", **params})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def test_event_sink_then_pull_gives_one_cdr_per_participant(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(20, per_conference=5)
    app = create_allinone_app(
        data_dir=tmp_path / "platform", bus_url=f"memory://{uuidlib.uuid4().hex}"
    )
    async with serving(app) as client:
        early = node.participants[:8]
        resp = await client.post("/v1/pexip/events", json=[sink_disconnect(p) for p in early])
        assert resp.status_code == 202, resp.text

        async def sink_cdrs() -> bool:
            return len(await pexip_cdrs(client)) == 8

        await wait_for(sink_cdrs, what="8 CDRs from the event sink")

        settings = settings_for(node, certs, tmp_path / "pexip", ingest_url=str(client.base_url))
        puller = Puller(settings, ingest_client=client, backoff_s=0.01)
        first = await puller.pull(until=UNTIL)
        assert first.posted == 24  # 20 participants + 4 conferences, all durable

        async def all_cdrs() -> bool:
            return len(await pexip_cdrs(client)) == 20

        await wait_for(all_cdrs, what="20 pexip CDRs")
        since = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        again = await puller.pull(since, UNTIL)
        assert again.posted == 24
        # A sentinel posted after the re-pull: once it is stored, the re-pull was processed.
        sentinel = {**node.participants[0], "id": "sentinel", "resource_uri": None}
        resp = await client.post("/v1/pexip/history", json={"participants": [sentinel]})
        assert resp.status_code == 202

        async def sentinel_stored() -> bool:
            return (await client.get("/v1/cdrs/sentinel")).status_code == 200

        await wait_for(sentinel_stored, what="the sentinel CDR")
        cdrs = [c for c in await pexip_cdrs(client) if c["call_id"] != "sentinel"]
        assert sorted(c["call_id"] for c in cdrs) == sorted(p["id"] for p in node.participants)
        feeds = {c["call_id"]: c["extra"]["feed"] for c in cdrs}
        assert {feeds[p["id"]] for p in early} == {"event_sink"}  # the first arrival is kept
        assert {feeds[p["id"]] for p in node.participants[8:]} == {"history"}

        # Conferences: each links its five participants, event-sink ones included.
        conf = node.conferences[1]  # participants 5..9: three from the sink, two from history
        linked = await pexip_cdrs(client, conference=conf["id"])
        assert sorted(c["call_id"] for c in linked) == sorted(
            p["id"] for p in node.participants[5:10]
        )
        detail = (await client.get(f"/v1/conferences/{conf['id']}")).json()
        assert detail["name"] == conf["name"]
        assert detail["participant_count"] == 5
        assert len(detail["participants"]) == 5
        listed = (await client.get("/v1/conferences", params={"limit": "100"})).json()["items"]
        assert {c["conference_id"] for c in listed} == {c["id"] for c in node.conferences}
        assert (await client.get("/v1/conferences/nope")).status_code == 404

        # Each completed pull reported itself to ingest (the console's Pexip page).
        (report,) = (await client.get("/v1/pexip/pulls")).json()["items"]
        assert report["node"] == node.url.removeprefix("https://")
        assert report["participants"] == 20
        assert report["since"].startswith("2024-01-01")  # the second pull's window
        assert report["stale"] is False

    assert first.records[RecordType.PARTICIPANT] == 20


def test_pull_command_exit_status_and_files(
    node: FakeNode,
    certs: Certs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node.conferences, node.participants = make_history(12)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # data_collector.log's handler
    # The collector's variable names work where the PEXIP_ ones are unset.
    monkeypatch.setenv("DEFAULT_MGR_ADDRESS", node.url)
    monkeypatch.setenv("DEFAULT_MGR_USERNAME", node.username)
    monkeypatch.setenv("DEFAULT_MGR_SECRET", "wrong")
    monkeypatch.setenv("PEXIP_CA_FILE", str(certs.ca_file))
    monkeypatch.setenv("PEXIP_DATA_DIR", str(tmp_path))
    assert pull_command(None, None) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "refused the credentials (401)" in err
    assert "PEXIP_PASSWORD" in err
    assert not list(tmp_path.glob("*.csv"))

    secret = tmp_path / "secret"
    secret.write_text(node.password + "\n")
    monkeypatch.setenv("PEXIP_PASSWORD_FILE", str(secret))
    assert pull_command("2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z") == 0
    out = capsys.readouterr().out
    assert "pulled 3 conferences and 12 participants" in out
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert len(names) == 4
    assert "pexHistoryConf.csv" in names
    assert "pexHistoryPart.csv" in names
    assert (tmp_path / "data_collector.log").read_text().count("pulled 3 conferences") == 1

    assert pull_command("yesterday", None) == 2
    assert "neither epoch seconds nor an ISO 8601" in capsys.readouterr().err


@pytest.mark.integration
async def test_conferences_on_postgresql(fresh_pg_url: str, tmp_path: Path) -> None:
    confs, parts = make_history(6, per_conference=3, seed="pg")
    app = create_allinone_app(
        data_dir=tmp_path, database_url=fresh_pg_url, bus_url=f"memory://{uuidlib.uuid4().hex}"
    )
    async with serving(app) as client:
        resp = await client.post(
            "/v1/pexip/history", json={"conferences": confs, "participants": parts}
        )
        assert resp.status_code == 202, resp.text

        async def stored() -> bool:
            return len(await pexip_cdrs(client)) == 6

        await wait_for(stored, what="6 CDRs on PostgreSQL")
        linked = await pexip_cdrs(client, conference=confs[1]["id"])
        assert sorted(c["call_id"] for c in linked) == sorted(p["id"] for p in parts[3:])
        page = (await client.get("/v1/conferences", params={"limit": "1"})).json()
        assert [c["conference_id"] for c in page["items"]] == [confs[1]["id"]]  # newest end
        rest = await client.get("/v1/conferences", params={"cursor": page["next_cursor"]})
        assert [c["conference_id"] for c in rest.json()["items"]] == [confs[0]["id"]]


def test_done_when_pull_command_into_a_running_platform(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    """The issue's "done when": `cdrflow pexip pull` against a paging node writes the four CSV
    files, and GET /v1/cdrs?source=pexip on a running `cdrflow run` lists one CDR per
    participant (real processes, real HTTP between them)."""
    node.conferences, node.participants = make_history(230, per_conference=10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDRFLOW_", "PEXIP_"))}
    platform_env = {
        **env,
        "CDRFLOW_DATA_DIR": str(tmp_path / "platform"),
        "CDRFLOW_MOCK_RATE": "0",
        "INGEST_TOKENS": "pexip-token",
    }
    log = (tmp_path / "run.log").open("wb")
    proc = spawn(
        [sys.executable, "-m", "cdrflow", "run", "--port", str(port)],
        env=platform_env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "cdrflow run did not get ready"
            time.sleep(0.2)
        data = tmp_path / "pexip"
        pull_env = {
            **env,
            "PEXIP_URL": node.url,
            "PEXIP_PASSWORD": node.password,
            "PEXIP_CA_FILE": str(certs.ca_file),
            "PEXIP_DATA_DIR": str(data),
            "PEXIP_PAGE_SIZE": "50",
            "PEXIP_INGEST_URL": base,
            "PEXIP_INGEST_TOKEN": "pexip-token",
        }
        done = subprocess.run(
            [sys.executable, "-m", "cdrflow", "pexip", "pull"],
            env=pull_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "pulled 23 conferences and 230 participants" in done.stdout
        csvs = sorted(p.name for p in data.glob("*.csv"))
        assert len(csvs) == 4, csvs
        assert len(node.paths("participant")) == 5  # 230 in pages of 50

        deadline = time.monotonic() + 60
        items: list[dict[str, Any]] = []
        while len(items) < 230 and time.monotonic() < deadline:
            resp = httpx.get(
                f"{base}/v1/cdrs", params={"source": "pexip", "limit": 1000}, timeout=5
            )
            items = resp.json()["items"]
            time.sleep(0.2)
        assert sorted(c["call_id"] for c in items) == sorted(p["id"] for p in node.participants)
    finally:
        stop(proc)
        log.close()
