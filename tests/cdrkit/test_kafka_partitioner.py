"""The Kafka bus's partitioner puts every key where aiokafka's default (Kafka's murmur2) does."""

from __future__ import annotations

import random
import uuid

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from cdrkit.bus.kafka import murmur2, partition_for


def _keys() -> list[bytes]:
    rng = random.Random(15)
    keys = [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(2000)]
    keys += [rng.randbytes(n) for n in range(130) for _ in range(8)]  # every tail length
    keys += [b"", b"\xff" * 7, b"\x00" * 9, "é😀".encode()]
    return keys


def test_murmur2_is_kafkas() -> None:
    for key in _keys():
        assert murmur2(key) == aiokafka_murmur2(key), key


def test_partition_is_the_default_partitioners() -> None:
    default = DefaultPartitioner()
    for key in _keys():
        for count in (1, 3, 4, 6, 12):
            partitions = list(range(count))
            expected = default(key, partitions, partitions)
            assert partition_for(key, partitions, partitions) == expected


def test_no_key_picks_an_available_partition() -> None:
    assert {partition_for(None, [0, 1, 2, 3], [2]) for _ in range(50)} == {2}
    assert {partition_for(None, [0, 1], []) for _ in range(200)} == {0, 1}
