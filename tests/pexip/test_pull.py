"""The history puller against a fake Management Node over real HTTPS (tests/pexip/fakenode.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cdr_ingest.pexip.client import AuthFailed, PullFailed
from cdr_ingest.pexip.csvfiles import read_csv
from cdr_ingest.pexip.puller import Puller
from cdr_ingest.pexip.records import PARTICIPANT_FIELDS, RecordType
from cdr_ingest.pexip.state import PullState
from tests.pexip.conftest import settings_for
from tests.pexip.fakenode import Certs, FakeNode, Fault, make_history

UNTIL = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def csv_files(directory: Path) -> list[str]:
    return [n for n in names(directory) if n.endswith(".csv")]


def aggregate_ids(directory: Path, name: str = "pexHistoryPart.csv") -> list[str]:
    return [row["id"] for row in read_csv(directory / name)]


async def test_12345_participants_across_pages_all_fetched(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(12_345)
    settings = settings_for(node, certs, tmp_path, page_size=500)
    puller = Puller(settings, backoff_s=0.01)
    result = await puller.pull(until=UNTIL)

    expected = [p["id"] for p in node.participants]
    assert result.records[RecordType.PARTICIPANT] == 12_345
    ids = aggregate_ids(tmp_path)
    assert len(ids) == 12_345
    assert set(ids) == set(expected)
    # meta.next followed to the end: 25 participant pages of 500, the last one partial
    assert len(node.paths("participant")) == 25
    assert "offset=12000" in node.paths("participant")[-1]
    assert node.max_in_flight <= 2
    assert puller.max_in_flight <= 2
    pulled = Path(result.files[1])
    assert pulled.name.endswith("_pexHistoryPart.csv")
    assert len(read_csv(pulled)) == 12_345
    conf_ids = aggregate_ids(tmp_path, "pexHistoryConf.csv")
    assert set(conf_ids) == {c["id"] for c in node.conferences}
    state = PullState.load(tmp_path)
    assert state.checkpoint == dt.datetime.fromisoformat(node.conferences[-1]["end_time"]).replace(
        tzinfo=dt.UTC
    )


async def test_interrupted_pull_resumes_from_checkpoint_without_duplicates(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(1_000)
    settings = settings_for(node, certs, tmp_path, retries=0)
    first_half = node.participants[:500]
    # A first pull takes the first 500 participants and completes.
    mid = dt.datetime.fromisoformat(first_half[-1]["end_time"]).replace(tzinfo=dt.UTC)
    await Puller(settings, backoff_s=0.01).pull(until=mid + dt.timedelta(microseconds=1))
    checkpoint = PullState.load(tmp_path).checkpoint
    assert checkpoint == mid
    before = csv_files(tmp_path)
    # The next pull breaks after 4 good answers (the node goes away mid-paging).
    node.fail_after = node.good + 4
    with pytest.raises(PullFailed, match="did not answer"):
        await Puller(settings, backoff_s=0.01).pull(until=UNTIL)
    assert PullState.load(tmp_path).checkpoint == checkpoint  # not moved by a failed pull
    assert csv_files(tmp_path) == before  # nothing half-written published
    assert not [n for n in names(tmp_path) if n.endswith(".tmp")]
    # The node is back: the next pull starts at checkpoint - overlap and completes.
    node.fail_after = None
    node.requests.clear()
    result = await Puller(settings, backoff_s=0.01).pull(until=UNTIL)
    since = checkpoint - settings.overlap
    assert result.since == since
    assert (
        f"end_time__gte={since.replace(tzinfo=None).isoformat(timespec='seconds')}".replace(
            ":", "%3A"
        )
        in node.paths("participant")[0]
    )
    ids = aggregate_ids(tmp_path)
    assert sorted(ids) == sorted(p["id"] for p in node.participants)  # each once


async def test_429_with_retry_after_and_503_are_retried(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(30)
    node.faults = [Fault(429, {"Retry-After": "1"}), Fault(503)]
    result = await Puller(settings_for(node, certs, tmp_path), backoff_s=0.01).pull(until=UNTIL)
    assert result.records[RecordType.PARTICIPANT] == 30
    (t429, _), (t503, _), (t_ok, _) = node.requests[:3]
    assert t503 - t429 >= 0.9  # Retry-After: 1 was honoured
    assert t_ok - t503 < 0.9  # 503 has no Retry-After: the short backoff
    assert len(aggregate_ids(tmp_path)) == 30


async def test_retries_give_up_with_a_sentence(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.faults = [Fault(503)] * 3
    with pytest.raises(PullFailed, match=r"did not answer .* after 3 attempts \(HTTP 503\)"):
        await Puller(settings_for(node, certs, tmp_path, retries=2), backoff_s=0.01).pull()
    assert csv_files(tmp_path) == []


async def test_wrong_password_fails_without_writing_a_file(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(10)
    settings = settings_for(node, certs, tmp_path, password="wrong")
    with pytest.raises(AuthFailed, match="PEXIP_USERNAME and PEXIP_PASSWORD"):
        await Puller(settings, backoff_s=0.01).pull()
    assert csv_files(tmp_path) == []
    assert not (tmp_path / "checkpoint.json").exists()
    assert len(node.requests) == 1  # a refused credential is not retried


async def test_second_pull_of_the_same_window_adds_no_csv_rows(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(250)
    settings = settings_for(node, certs, tmp_path)
    since = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    first = await Puller(settings, backoff_s=0.01).pull(since, UNTIL)
    second = await Puller(settings, backoff_s=0.01).pull(since, UNTIL)
    assert first.aggregate_added[RecordType.PARTICIPANT] == 250
    assert set(second.aggregate_added.values()) == {0}
    assert len(aggregate_ids(tmp_path)) == 250
    assert len(aggregate_ids(tmp_path, "pexHistoryConf.csv")) == 50
    # each pull still has its own per-pull files with its records
    per_pull = [tmp_path / n for n in csv_files(tmp_path) if n.endswith("_pexHistoryPart.csv")]
    assert len(per_pull) == 2
    assert all(len(read_csv(p)) == 250 for p in per_pull)


async def test_unknown_certificate_is_refused_unless_its_ca_is_given(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(5)
    no_ca = settings_for(node, certs, tmp_path, ca_file=None)
    with pytest.raises(PullFailed, match=r"not trusted.*PEXIP_CA_FILE"):
        await Puller(no_ca, backoff_s=0.01).pull()
    assert csv_files(tmp_path) == []
    result = await Puller(settings_for(node, certs, tmp_path), backoff_s=0.01).pull()
    assert result.records[RecordType.PARTICIPANT] == 5


async def test_old_era_bare_lists_without_late_fields(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.conferences, node.participants = make_history(40, old_era=True)
    node.bare = True  # no meta, no paging: one bare list per resource
    result = await Puller(settings_for(node, certs, tmp_path), backoff_s=0.01).pull(until=UNTIL)
    assert result.records[RecordType.PARTICIPANT] == 40
    rows = read_csv(tmp_path / "pexHistoryPart.csv")
    assert list(rows[0]) == [*PARTICIPANT_FIELDS, "extra"]
    assert rows[0]["historic_call_quality"] == ""
    assert rows[0]["av_id"] == ""
    assert rows[0]["remote_alias"] == "Test"
    assert rows[0]["has_media"] == "true"


async def test_retention_gap_is_warned(node: FakeNode, certs: Certs, tmp_path: Path) -> None:
    node.conferences, node.participants = make_history(5)
    old = PullState(
        checkpoint=dt.datetime(2024, 3, 1, tzinfo=dt.UTC),
        last_success=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
    )
    old.save(tmp_path)
    result = await Puller(settings_for(node, certs, tmp_path), backoff_s=0.01).pull()
    assert any("may have purged" in w for w in result.warnings)
    quiet = await Puller(settings_for(node, certs, tmp_path), backoff_s=0.01).pull()
    assert quiet.warnings == []


async def test_meta_next_to_another_host_is_refused(
    node: FakeNode, certs: Certs, tmp_path: Path
) -> None:
    node.faults = [
        Fault(200, body='{"meta": {"next": "https://evil.example/steal"}, "objects": []}')
    ]
    with pytest.raises(PullFailed, match="another host"):
        await Puller(settings_for(node, certs, tmp_path), backoff_s=0.01).pull()
