"""``cdrflow run``'s own bus settings (``embedded_overrides``): the log in the data dir, and one
partition per topic it creates unless the URL says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdrflow.platform import embedded_overrides
from cdrkit.bus import BusConfig


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
    assert embedded_overrides() == {}
