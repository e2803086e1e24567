"""The bus interface: one contract, two backends (``memory://`` in-process, ``kafka://`` aiokafka).

Delivery contract, the same for both backends:

* ``Producer.send`` / ``send_many`` return only once the broker acknowledged every message
  (``acks=all`` on Kafka). Until then nothing may be reported as durable to a caller.
* Consumers never auto-commit. ``Consumer.commit`` stores the *next* offset to read for each
  partition; a consumer that stops (or crashes) before committing gets its uncommitted messages
  redelivered, to itself or to whichever group member takes the partition over.
* A new consumer group starts at the earliest offset.
* Messages with the same key land in the same partition, so they are consumed in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from cdrmodel.errors import Transient


class Delivery(StrEnum):
    """How a consume loop treats offsets; named in code rather than hidden in a flag."""

    AT_LEAST_ONCE = "at_least_once"  # commit after the work is durable; sinks are idempotent


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Record:
    """A message to produce."""

    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class BusError(Transient):
    code = "bus_unavailable"
    status = 503


class CommitFailed(BusError):
    """The commit was refused (typically: the partition was reassigned by a rebalance).

    The work is durable and idempotent, so the new owner's redelivery is harmless.
    """


RevokeCallback = Callable[[set[TopicPartition]], Awaitable[None]]


@runtime_checkable
class Producer(Protocol):
    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        """Publish one message; return once the broker acknowledged it."""

    async def send_many(self, topic: str, records: Sequence[Record]) -> None:
        """Publish a batch; return once the broker acknowledged every message of it."""


@runtime_checkable
class Consumer(Protocol):
    async def getmany(self, *, timeout_s: float, max_records: int) -> list[Message]:
        """Up to ``max_records`` messages from the assigned partitions, in offset order per
        partition; an empty list when nothing arrived within ``timeout_s``."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the next offset to read per partition. Raises ``CommitFailed`` if refused."""

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member currently owns."""

    def lag(self) -> dict[TopicPartition, int]:
        """Messages not yet fetched per owned partition, as far as this member knows (the
        broker's high watermark from the last fetch minus the position). Cheap: no I/O."""

    async def close(self) -> None:
        """Leave the group without committing anything."""


@runtime_checkable
class Bus(Protocol):
    url: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def producer(self) -> Producer: ...

    async def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_revoke: RevokeCallback | None = None,
    ) -> Consumer:
        """A started member of consumer group ``group`` subscribed to ``topics``.

        ``on_revoke`` is awaited before partitions are taken away, so the owner can commit what
        it has made durable (the final commit on partition revocation).
        """

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the topics if they do not exist."""

    async def ping(self) -> None:
        """Raise ``BusError`` if the broker is unreachable."""


@dataclass(frozen=True)
class BusConfig:
    """Parsed bus URL: ``memory://[name]?partitions=4`` or
    ``kafka://host:9092[,host2:9092]?idempotence=true&compression=zstd&partitions=6``.

    Both: ``partitions`` (of topics the bus creates, default 4), ``compression`` (``zstd``, the
    default, ``snappy``, ``lz4``, ``gzip``, ``none``; memory ignores it. Snappy costs the clients
    the least CPU, zstd gives the smallest messages and no more CPU in all: docs/performance.md),
    ``max_request_size`` (bytes,
    default 8 MiB + 64 KiB: the largest message accepted, above it ``PayloadTooLarge``),
    ``rebalance_timeout_ms``.

    ``memory://`` buses with the same name share one in-process broker; the query is ignored for
    that. ``rebalance_timeout_ms`` there bounds the wait for ``on_revoke`` (default 30000).

    ``kafka://`` only, integers in ms unless noted (unset: aiokafka's default):
    ``idempotence`` (default true; false for brokers without idempotent producers, like Tansu),
    ``linger_ms`` (5), ``max_batch_size`` (bytes of records batched per partition, 512 KiB),
    ``request_timeout_ms`` (30000; bounds ``send`` and ``commit``; consumers
    use at least the rebalance timeout + 5 s, since a JoinGroup waits out the rebalance),
    ``session_timeout_ms``, ``heartbeat_interval_ms``, ``max_poll_interval_ms``,
    ``max_partition_fetch_bytes`` / ``fetch_max_bytes`` (default: at least ``max_request_size``),
    ``replication_factor`` (of created topics; default min(3, brokers)), ``client_id``
    (``cdrflow``), ``ping_timeout_ms`` (3000), ``join_timeout_ms`` (60000: joining a group),
    ``close_timeout_ms`` (10000); TLS and SASL: ``security_protocol``, ``ssl_cafile``,
    ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname``, ``sasl_mechanism``,
    ``sasl_username``, ``sasl_password_file`` (see ``cdrkit.bus.security``). Tests shorten
    ``session_timeout_ms=6000``, ``heartbeat_interval_ms=200`` and ``rebalance_timeout_ms=6000``
    so rebalances settle fast.
    Unknown options are logged and ignored."""

    scheme: str
    hosts: str
    partitions: int = 4
    idempotence: bool = True
    compression: str | None = "zstd"
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> BusConfig:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            # Not repeated in the message: it may hold a password.
            raise ValueError(
                "the bus URL must not carry credentials (user:password@); use the sasl_username "
                "option and CDRFLOW_BUS_SASL_PASSWORD or sasl_password_file"
            )
        if parts.scheme not in ("memory", "kafka"):
            raise ValueError(f"bus URL {url!r}: the scheme must be memory:// or kafka://")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        compression = query.get("compression", "zstd")
        if compression not in ("none", "gzip", "lz4", "zstd", "snappy"):
            raise ValueError(f"bus URL {url!r}: unknown compression {compression!r}")
        hosts = parts.netloc
        if parts.scheme == "kafka" and not hosts:
            raise ValueError(f"bus URL {url!r}: kafka:// needs host:port[,host:port]")
        return cls(
            scheme=parts.scheme,
            hosts=hosts,
            partitions=int(query.get("partitions", "4")),
            idempotence=query.get("idempotence", "true").lower() in ("1", "true", "yes", "on"),
            compression=None if compression == "none" else compression,
            options=query,
        )
