"""``cdrflow run``'s own bus settings (``embedded_overrides``): the log in the data dir, and one
partition per topic it creates unless the URL says otherwise, and the parser's parse in a worker
thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdr_parser.settings import ParserSettings
from cdrflow.platform import embedded_overrides
from cdrkit.bus import BusConfig
from cdrkit.settings import load


def test_the_all_in_one_bus_is_durable_with_one_partition_a_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDRFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CDRFLOW_BUS_URL", raising=False)
    url = str(embedded_overrides()["bus_url"])
    config = BusConfig.parse(url)
    assert url.startswith("memory://")
    assert config.options["dir"] == str((tmp_path / "bus").resolve())
    assert config.partitions == 1


@pytest.mark.parametrize(
    ("given", "partitions"),
    [("memory://x?partitions=3", 3), ("memory://?dir=/elsewhere", 1)],
)
def test_a_partitions_option_given_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, partitions: int
) -> None:
    monkeypatch.setenv("CDRFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CDRFLOW_BUS_URL", given)
    config = BusConfig.parse(str(embedded_overrides()["bus_url"]))
    assert config.partitions == partitions
    assert "dir" in config.options


def test_kafka_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDRFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CDRFLOW_BUS_URL", "kafka://broker:9092")
    assert "bus_url" not in embedded_overrides()


def test_the_all_in_one_parses_in_a_thread_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One process uses a second core for libxml2's parse (cdr_parser.ahead); the distributed
    parser does not (its default), and an explicit PARSER_PARSE_IN_THREAD is kept."""
    monkeypatch.setenv("CDRFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PARSER_PARSE_IN_THREAD", raising=False)
    assert embedded_overrides()["parse_in_thread"] is True
    assert ParserSettings().parse_in_thread is False
    monkeypatch.setenv("PARSER_PARSE_IN_THREAD", "false")
    assert "parse_in_thread" not in embedded_overrides()
    assert load(ParserSettings, **embedded_overrides()).parse_in_thread is False
