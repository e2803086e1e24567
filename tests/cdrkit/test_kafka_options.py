"""The Kafka bus's producer options (no broker needed)."""

from __future__ import annotations

from cdrkit.bus.base import BusConfig
from cdrkit.bus.kafka import _int_options


def test_the_producer_batches_more_than_one_cdr_per_partition() -> None:
    # aiokafka's default of 16 KiB holds a single 10-15 KB CDR envelope (issue 15).
    options = _int_options(BusConfig.parse("kafka://broker:9092"))
    assert options["max_batch_size"] == 512 * 1024
    assert options["linger_ms"] == 5


def test_max_batch_size_is_a_url_option() -> None:
    options = _int_options(BusConfig.parse("kafka://broker:9092?max_batch_size=16384"))
    assert options["max_batch_size"] == 16384
