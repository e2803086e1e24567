"""CSV files, settings and the schedule of the Pexip puller (no node needed)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from cdr_ingest.pexip.csvfiles import PullFiles, header, merge_aggregate, read_csv
from cdr_ingest.pexip.pulls import PullReport, is_stale
from cdr_ingest.pexip.records import CONFERENCE_FIELDS, RecordType
from cdr_ingest.pexip.settings import PexipSettings
from cdrflow.pexip_cli import run_schedule
from cdrkit.settings import ConfigurationError
from tests.pexip.conftest import settings_for
from tests.pexip.fakenode import Certs, FakeNode, make_history

STARTED = dt.datetime(2024, 3, 1, 12, 0, 5, tzinfo=dt.UTC)


def test_rows_rfc4180_nested_json_and_extra_column(tmp_path: Path) -> None:
    files = PullFiles(tmp_path, STARTED)
    files.write(
        RecordType.CONFERENCE,
        {
            "id": "c1",
            "name": 'Board, "weekly"\nroom',
            "participants": ["/p/1/", "/p/2/"],
            "duration": 61,
            "tag": None,
            "is_direct_media": True,  # a field a newer Pexip adds
            "new_block": {"a": 1},
        },
    )
    added = files.commit()
    assert added[RecordType.CONFERENCE] == 1
    pulled = tmp_path / "2024-03-01T12-00-05Z_pexHistoryConf.csv"
    raw = pulled.read_bytes()
    assert raw.startswith(",".join([*CONFERENCE_FIELDS, "extra"]).encode() + b"\r\n")
    assert b'"Board, ""weekly""\nroom"' in raw  # quoted, quotes doubled, newline kept
    (row,) = read_csv(pulled)
    assert row["participants"] == '["/p/1/","/p/2/"]'
    assert row["duration"] == "61"
    assert row["tag"] == ""
    assert row["extra"] == '{"is_direct_media":true,"new_block":{"a":1}}'
    assert (tmp_path / "pexHistoryConf.csv").read_bytes() == raw


def test_aggregate_keeps_each_id_once_and_its_header(tmp_path: Path) -> None:
    for n, ids in enumerate((["a", "b"], ["b", "c"])):
        files = PullFiles(tmp_path, STARTED + dt.timedelta(seconds=n))
        for rid in ids:
            files.write(RecordType.PARTICIPANT, {"id": rid, "start_time": "2024-03-01T00:00:00"})
        files.commit()
    rows = read_csv(tmp_path / "pexHistoryPart.csv")
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert list(rows[0]) == header(RecordType.PARTICIPANT)
    # The id index is checked against the aggregate: a stale one (a crash between the rename of
    # the aggregate and of its index) is rebuilt from the aggregate, and nothing is added twice.
    index = tmp_path / ".pexHistoryPart.csv.ids"
    assert sorted(index.read_text().split("\n")[1:-1]) == ["a", "b", "c"]
    index.write_text("size=1\n")
    files = PullFiles(tmp_path, STARTED + dt.timedelta(seconds=5))
    for rid in ("c", "d"):
        files.write(RecordType.PARTICIPANT, {"id": rid})
    assert files.commit()[RecordType.PARTICIPANT] == 1
    assert [r["id"] for r in read_csv(tmp_path / "pexHistoryPart.csv")] == ["a", "b", "c", "d"]


def test_a_foreign_aggregate_is_moved_aside_not_changed(tmp_path: Path) -> None:
    foreign = tmp_path / "pexHistoryPart.csv"
    foreign.write_text("id,display_name\nx,Old\n")
    files = PullFiles(tmp_path, STARTED)
    files.write(RecordType.PARTICIPANT, {"id": "a"})
    files.commit()
    aside = [p for p in tmp_path.iterdir() if p.name.endswith(".foreign.csv")]
    assert len(aside) == 1
    assert aside[0].read_text() == "id,display_name\nx,Old\n"
    assert [r["id"] for r in read_csv(foreign)] == ["a"]


def test_abort_leaves_no_file_and_two_pulls_in_a_second_keep_both(tmp_path: Path) -> None:
    files = PullFiles(tmp_path, STARTED)
    files.write(RecordType.PARTICIPANT, {"id": "a"})
    files.abort()
    assert list(tmp_path.iterdir()) == []
    for _ in range(2):
        files = PullFiles(tmp_path, STARTED)
        files.write(RecordType.PARTICIPANT, {"id": "a"})
        files.commit()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "2024-03-01T12-00-05Z_pexHistoryPart.csv" in names
    assert "2024-03-01T12-00-05Z-1_pexHistoryPart.csv" in names


def test_merge_reads_what_it_wrote(tmp_path: Path) -> None:
    pulled = tmp_path / "p.csv"
    with pulled.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header(RecordType.CONFERENCE))
        writer.writerow(["ü-1", *[""] * len(CONFERENCE_FIELDS)])
    assert merge_aggregate(tmp_path, RecordType.CONFERENCE, pulled) == 1
    assert merge_aggregate(tmp_path, RecordType.CONFERENCE, pulled) == 0


def test_collector_variable_names_and_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_MGR_ADDRESS", "pexip-mgr.example.com")
    monkeypatch.setenv("DEFAULT_PART_LIMIT", "10000")
    monkeypatch.setenv("DATA_CRON_TIME", "0 2 * * *")
    monkeypatch.setenv("PEXIP_OVERLAP", "15m")
    settings = PexipSettings()
    assert settings.url == "https://pexip-mgr.example.com"
    assert settings.page_size == 10_000
    assert settings.cron == "0 2 * * *"
    assert settings.overlap == dt.timedelta(minutes=15)
    monkeypatch.setenv("PEXIP_CRON", "*/5 * * * *")  # the PEXIP_ form wins
    assert PexipSettings().cron == "*/5 * * * *"
    monkeypatch.setenv("PEXIP_CRON", "every day")
    with pytest.raises(ValidationError):
        PexipSettings()
    monkeypatch.setenv("PEXIP_CRON", "61 * * * *")
    with pytest.raises(ValidationError):
        PexipSettings()


def test_password_file_and_missing_password(tmp_path: Path) -> None:
    assert PexipSettings(password="p").secret() == "p"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert PexipSettings(password="p", password_file=secret).secret() == "from-file"
    with pytest.raises(ConfigurationError, match="PEXIP_PASSWORD_FILE"):
        PexipSettings(password_file=tmp_path / "absent").secret()
    with pytest.raises(ConfigurationError, match="set PEXIP_PASSWORD"):
        PexipSettings().secret()


async def test_run_pulls_at_start_then_waits_for_the_schedule(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(5)
    settings = settings_for(node, certs, tmp_path, cron="0 0 1 1 *")  # next: New Year
    stop = asyncio.Event()
    task = asyncio.create_task(run_schedule(settings, stop))

    async def pulled() -> None:
        while not (tmp_path / "pexHistoryPart.csv").exists():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(pulled(), 30)
    await asyncio.sleep(0.2)
    assert not task.done()  # waiting for 1 January, not pulling again
    requests = len(node.requests)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(node.requests) == requests == 2


def test_a_node_is_stale_after_two_missed_scheduled_pulls() -> None:
    finished = dt.datetime(2024, 3, 1, 12, 0, 30, tzinfo=dt.UTC)
    report = PullReport(
        node="mgr",
        finished=finished,
        until=finished,
        conferences=0,
        participants=0,
        posted=0,
        cron="*/15 * * * *",
    )
    # runs due 12:15 and 12:30; stale after 12:30 + 5 min grace
    assert not is_stale(report, dt.datetime(2024, 3, 1, 12, 34, tzinfo=dt.UTC))
    assert is_stale(report, dt.datetime(2024, 3, 1, 12, 36, tzinfo=dt.UTC))
    daily = report.model_copy(update={"cron": None})
    assert not is_stale(daily, finished + dt.timedelta(hours=23))
    assert is_stale(daily, finished + dt.timedelta(hours=25))
