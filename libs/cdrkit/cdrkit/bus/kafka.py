"""The Kafka bus (``kafka://host:9092[,host2:9092]``) on aiokafka.

Delivery (see ``cdrkit.bus.base``): one shared producer with ``acks="all"``; ``send`` returns once
the broker acknowledged. Consumers never auto-commit; ``commit`` stores the next offset to read;
``close`` leaves the group without committing. Partitions are assigned by Kafka's eager protocol,
so ``on_revoke`` receives every partition the member owned before each rebalance, and a partition
kept across a rebalance restarts at its committed offset.

Every aiokafka error a caller could meet is translated here: ``PayloadTooLarge`` for a message
over the size limit, ``CommitFailed`` for a commit refused after a rebalance, ``BusError`` for the
rest (broker unreachable, timeouts, a closed consumer).

``start`` does not fail when the broker is unreachable, so that a service can start and report
``/readyz`` (through ``ping``) or spool while Kafka is down: the producer then connects on the next
``send`` (which raises ``BusError`` while Kafka stays down). Topics a producer sends to are
auto-created with the broker's default partition count; call ``ensure_topics`` first to get
``partitions``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)

from cdrkit.bus.base import (
    BusConfig,
    BusError,
    CommitFailed,
    Message,
    Record,
    RevokeCallback,
    TopicPartition,
)
from cdrkit.bus.security import OPTIONS as SECURITY_OPTIONS
from cdrkit.bus.security import KafkaSecurity, parse_security
from cdrmodel.errors import CdrflowError, PayloadTooLarge

logger = logging.getLogger(__name__)

Headers = tuple[tuple[str, bytes], ...]

_TOPIC_ALREADY_EXISTS = 36

# Integer URL options and their defaults (None: aiokafka's default). See BusConfig's docstring.
_INT_OPTIONS: dict[str, int | None] = {
    "linger_ms": 5,
    # Bytes of (uncompressed) records the producer batches per partition. aiokafka's default,
    # 16 KiB, holds one 10-15 KB CDR envelope: every send behind it waited for the batch to be
    # drained, one message per batch was compressed alone (issue 15). 512 KiB of records stays
    # under a broker's default message.max.bytes (1 MiB) compressed or not; a larger message
    # still goes alone in its own batch.
    "max_batch_size": 512 * 1024,
    # 8 MiB of payload plus room for the record and batch framing.
    "max_request_size": 8 * 1024 * 1024 + 64 * 1024,
    "request_timeout_ms": 30_000,
    "session_timeout_ms": None,
    "heartbeat_interval_ms": None,
    "max_poll_interval_ms": None,
    "rebalance_timeout_ms": None,
    "max_partition_fetch_bytes": None,  # default: max_request_size, so any accepted message fits
    "fetch_max_bytes": None,
    "replication_factor": None,  # default: min(3, brokers in the cluster)
    "ping_timeout_ms": 3_000,
    "join_timeout_ms": 60_000,
    "close_timeout_ms": 10_000,
}
_OTHER_OPTIONS = {"partitions", "idempotence", "compression", "client_id"} | SECURITY_OPTIONS


def _int_options(config: BusConfig) -> dict[str, int | None]:
    values = dict(_INT_OPTIONS)
    for name, raw in config.options.items():
        if name in _INT_OPTIONS:
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(f"bus URL option {name}={raw!r} must be an integer") from None
        elif name not in _OTHER_OPTIONS:
            logger.warning("bus URL option %r is unknown to the Kafka bus; ignored", name)
    return values


def _translate(exc: KafkaError, what: str) -> CdrflowError:
    if isinstance(exc, MessageSizeTooLargeError | RecordTooLargeError):
        return PayloadTooLarge(f"{what}: {exc}")
    return BusError(f"{what}: {exc}")


# What connecting can raise besides KafkaError: TLS failures (ssl.SSLError is an OSError), and
# aiokafka's SCRAM code failing on a server-final message that is an error ("e=unknown-user"
# has no "v" attribute: KeyError) instead of raising an authentication error.
_CONNECT_ERRORS = (KafkaError, OSError, KeyError)


def _connect_error(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "the broker refused the SASL credentials"
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else repr(exc)


def _no_none(options: Mapping[str, int | None], *names: str) -> dict[str, int]:
    """The options among ``names`` that were set, to pass on to aiokafka as keywords."""
    return {name: value for name in names if (value := options[name]) is not None}


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data``, the same value as ``aiokafka.partitioner.murmur2`` (the Java
    client's ``Utils.murmur2``) in about half its time: the 4-byte words come from one
    ``struct.unpack_from`` rather than four indexings and shifts each (issue 15: ~9 -> ~5 µs per
    36-byte call id, on every message produced)."""
    length = len(data)
    h = 0x9747B28C ^ length
    for word in struct.unpack_from(f"<{length >> 2}I", data):
        k = (word * _M) & _MASK
        h = ((h * _M) & _MASK) ^ (((k ^ (k >> 24)) * _M) & _MASK)
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's ``DefaultPartitioner`` (a key's partition is Kafka's: murmur2, positive, modulo
    the partition count; no key: a random available partition) with the faster ``murmur2``."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


class KafkaProducer:
    """Thin ``Producer`` over the bus's shared ``AIOKafkaProducer``."""

    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
    ) -> None:
        # The started producer without a coroutine call per message (issue 15).
        producer = self._bus._producer_client or await self._bus._ensure_producer()
        try:
            future = await producer.send(
                topic, value, key=key, headers=list(headers) if headers else None
            )
            await future
        except KafkaError as exc:
            raise _translate(exc, f"send to {topic}") from exc

    async def send_many(self, topic: str, records: Sequence[Record]) -> None:
        producer = await self._bus._ensure_producer()
        futures: list[asyncio.Future[object]] = []
        failure: KafkaError | None = None
        try:
            for record in records:
                futures.append(
                    await producer.send(
                        topic, record.value, key=record.key, headers=list(record.headers)
                    )
                )
        except KafkaError as exc:
            failure = exc
        # Await even after a failure: the queued messages are in flight either way, and their
        # outcome must be retrieved rather than left to "exception never retrieved" warnings.
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, KafkaError):
                raise result
        if failure is None:
            failure = next((r for r in results if isinstance(r, KafkaError)), None)
        if failure is not None:
            raise _translate(failure, f"send {len(records)} messages to {topic}") from failure


class _RevokeListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, group: str, on_revoke: RevokeCallback | None) -> None:
        self._group = group
        self._on_revoke = on_revoke

    async def on_partitions_revoked(self, revoked: set[KafkaTopicPartition]) -> None:
        tps = {TopicPartition(tp.topic, tp.partition) for tp in revoked}
        if not tps:  # aiokafka also calls this, empty, before the first join
            return
        logger.info("group %s: revoking %s", self._group, ", ".join(map(str, sorted(tps))))
        if self._on_revoke is None:
            return
        try:
            await self._on_revoke(tps)
        except Exception:
            logger.exception("group %s: on_revoke(%s) failed", self._group, sorted(tps))

    async def on_partitions_assigned(self, assigned: set[KafkaTopicPartition]) -> None:
        tps = sorted(TopicPartition(tp.topic, tp.partition) for tp in assigned)
        logger.info("group %s: assigned %s", self._group, ", ".join(map(str, tps)) or "-")


class KafkaConsumer:
    """One member of a Kafka consumer group, over an ``AIOKafkaConsumer``."""

    def __init__(self, bus: KafkaBus, consumer: AIOKafkaConsumer, group: str) -> None:
        self._bus = bus
        self._consumer = consumer
        self._group = group
        self._closed = False
        self._next: dict[TopicPartition, int] = {}  # next offset to fetch, per partition

    async def getmany(self, *, timeout_s: float, max_records: int) -> list[Message]:
        if self._closed:
            raise BusError(f"consumer of group {self._group} is closed")
        try:
            batches = await self._consumer.getmany(
                timeout_ms=max(int(timeout_s * 1000), 0), max_records=max_records
            )
        except ConsumerStoppedError as exc:
            raise BusError(f"consumer of group {self._group} was stopped") from exc
        except KafkaError as exc:
            raise BusError(f"consume for group {self._group}: {exc}") from exc
        messages: list[Message] = []
        debug = logger.isEnabledFor(logging.DEBUG)
        for tp, records in batches.items():
            for r in records:
                messages.append(
                    Message(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key,
                        b"" if r.value is None else r.value,
                        tuple(r.headers),
                        r.timestamp,
                    )
                )
            if records:
                self._next[TopicPartition(tp.topic, tp.partition)] = records[-1].offset + 1
            if debug and records:
                logger.debug(
                    "group %s consumed %s[%d]@%d..%d",
                    self._group,
                    tp.topic,
                    tp.partition,
                    records[0].offset,
                    records[-1].offset,
                )
        return messages

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self._closed:
            raise CommitFailed(f"consumer of group {self._group} is closed")
        if not offsets:
            return
        request = {KafkaTopicPartition(tp.topic, tp.partition): o for tp, o in offsets.items()}
        try:
            # aiokafka retries retriable errors forever (e.g. while the broker is down).
            async with asyncio.timeout(self._bus._request_timeout_s):
                await self._consumer.commit(request)
        except (CommitFailedError, IllegalStateError) as exc:
            raise CommitFailed(f"group {self._group} refused the commit: {exc}") from exc
        except TimeoutError as exc:
            raise BusError(f"commit for group {self._group} timed out") from exc
        except KafkaError as exc:
            raise BusError(f"commit for group {self._group}: {exc}") from exc
        if logger.isEnabledFor(logging.DEBUG):
            for tp, offset in offsets.items():
                logger.debug("group %s committed %s@%d", self._group, tp, offset)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def lag(self) -> dict[TopicPartition, int]:
        lags: dict[TopicPartition, int] = {}
        for ktp in self._consumer.assignment():
            highwater = self._consumer.highwater(ktp)  # from the last fetch response
            if highwater is None:
                continue
            tp = TopicPartition(ktp.topic, ktp.partition)
            position = self._next.get(tp)
            if position is None:
                continue  # nothing fetched yet: the start position is not known without I/O
            lags[tp] = max(highwater - position, 0)
        return lags

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._consumers.discard(self)
        # Auto-commit is off, so stopping only leaves the group: nothing gets committed.
        _leave_even_from_generation_zero(self._consumer)
        await _stop_quietly(self._consumer.stop, self._bus._close_timeout_s, f"group {self._group}")
        logger.info("consumer left group %s", self._group)


def _leave_even_from_generation_zero(client: AIOKafkaConsumer) -> None:
    """Make ``stop()`` send LeaveGroup even when the member's generation is 0.

    aiokafka leaves only from generations above 0, as Apache Kafka numbers them from 1, but
    Tansu's first generation is 0. Without a LeaveGroup the group waits a whole session timeout
    for the departed member before the next one gets its partitions. LeaveGroup carries no
    generation, and by the time ``stop()`` sends it the heartbeat has stopped, so bumping the
    number only lifts aiokafka's guard. Private API: if it changes, this quietly does nothing.
    """
    coordinator = getattr(client, "_coordinator", None)
    original = getattr(coordinator, "_maybe_leave_group", None)
    if coordinator is None or original is None:
        return

    async def leave() -> None:
        if coordinator.generation == 0:
            coordinator.generation = 1
        await original()

    coordinator._maybe_leave_group = leave


async def _stop_quietly(stop: Callable[[], Awaitable[object]], timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await stop()
    except (KafkaError, OSError, TimeoutError) as exc:
        # Closing is best effort: an unreachable broker must not keep a service from stopping.
        logger.warning("closing the Kafka client of %s: %r", what, exc)


class KafkaBus:
    """The ``Bus`` protocol on Apache Kafka (or any Kafka-protocol broker) through aiokafka."""

    def __init__(self, url: str, config: BusConfig, *, sasl_password: str | None = None) -> None:
        if config.scheme != "kafka":
            raise ValueError(f"bus URL {url!r}: KafkaBus needs a kafka:// URL")
        if config.partitions < 1:
            raise ValueError(f"bus URL {url!r}: partitions must be at least 1")
        self.url = url
        self._config = config
        self._bootstrap = config.hosts.split(",")
        self._client_id = config.options.get("client_id", "cdrflow")
        self._options = _int_options(config)
        self._security: KafkaSecurity = parse_security(config.options, sasl_password)
        self._tls_kwargs = self._security.client_kwargs()
        self._request_timeout_s = (self._options["request_timeout_ms"] or 30_000) / 1000
        self._close_timeout_s = (self._options["close_timeout_ms"] or 10_000) / 1000
        self._producer_client: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._producer = KafkaProducer(self)
        self._consumers: set[KafkaConsumer] = set()
        self._started = False

    async def start(self) -> None:
        self._started = True
        try:
            await self._ensure_producer()
        except BusError as exc:
            logger.warning("%s; the producer will connect on the next send", exc)

    async def close(self) -> None:
        self._started = False
        for consumer in list(self._consumers):
            await consumer.close()
        producer, self._producer_client = self._producer_client, None
        if producer is not None:
            # stop() flushes what is still queued; bounded so a dead broker cannot hang shutdown.
            await _stop_quietly(producer.stop, self._close_timeout_s, "the producer")

    @property
    def producer(self) -> KafkaProducer:
        return self._producer

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer_client is not None:
            return self._producer_client
        if not self._started:
            raise BusError(f"Kafka bus {self._config.hosts} is not started (or closed)")
        async with self._producer_lock:
            if self._producer_client is not None:
                return self._producer_client
            options = self._options
            max_request_size = options["max_request_size"]
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=self._config.idempotence,
                compression_type=self._config.compression,
                partitioner=partition_for,
                **_no_none(
                    options, "linger_ms", "max_batch_size", "max_request_size", "request_timeout_ms"
                ),
                **self._tls_kwargs,
            )
            try:
                await producer.start()
            except _CONNECT_ERRORS as exc:
                await _stop_quietly(producer.stop, self._close_timeout_s, "the producer")
                raise BusError(
                    f"Kafka at {self._config.hosts} is unreachable: {_connect_error(exc)}"
                ) from exc
            logger.info(
                "Kafka producer connected to %s over %s (compression %s, idempotence %s, "
                "max %s bytes)",
                self._config.hosts,
                self._security.describe(),
                self._config.compression or "none",
                self._config.idempotence,
                max_request_size,
            )
            self._producer_client = producer
            return producer

    async def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        on_revoke: RevokeCallback | None = None,
    ) -> KafkaConsumer:
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not one string")
        options = self._options
        # Fetch limits at least as large as the largest message a producer may send, so that no
        # accepted message can be stuck unfetchable.
        fetch = options["max_partition_fetch_bytes"] or options["max_request_size"] or 1_048_576
        fetch_max = options["fetch_max_bytes"] or max(fetch, 52_428_800)
        # A JoinGroup request legitimately waits for the whole rebalance, so, as the Java client
        # does, give the consumer's requests the rebalance timeout plus a margin: a short
        # request_timeout_ms (good for the producer's spool fallback) must not make joins fail.
        rebalance_ms = options["rebalance_timeout_ms"] or options["session_timeout_ms"] or 10_000
        request_ms = max(options["request_timeout_ms"] or 30_000, rebalance_ms + 5_000)
        client = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=fetch,
            fetch_max_bytes=fetch_max,
            request_timeout_ms=request_ms,
            **_no_none(
                options,
                "session_timeout_ms",
                "heartbeat_interval_ms",
                "max_poll_interval_ms",
                "rebalance_timeout_ms",
            ),
            **self._tls_kwargs,
        )
        client.subscribe(list(topics), listener=_RevokeListener(group, on_revoke))
        try:
            # start() returns once the group gave this member its partitions.
            async with asyncio.timeout((options["join_timeout_ms"] or 60_000) / 1000):
                await client.start()
        except (*_CONNECT_ERRORS, TimeoutError) as exc:
            await _stop_quietly(client.stop, self._close_timeout_s, f"group {group}")
            raise BusError(
                f"cannot join group {group} for {list(topics)}: {_connect_error(exc)}"
            ) from exc
        consumer = KafkaConsumer(self, client, group)
        self._consumers.add(consumer)
        return consumer

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        if not topics:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            request_timeout_ms=self._options["request_timeout_ms"] or 30_000,
            **self._tls_kwargs,
        )
        try:
            await admin.start()
            replication = self._options["replication_factor"]
            if replication is None:
                cluster = await admin.describe_cluster()
                replication = max(1, min(3, len(cluster["brokers"])))
            response = await admin.create_topics(
                [NewTopic(t, self._config.partitions, replication) for t in topics]
            )
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code == _TOPIC_ALREADY_EXISTS:
                    continue
                if code != 0:
                    detail = topic_error[2] if len(topic_error) > 2 else None
                    raise BusError(f"cannot create topic {name}: error {code} {detail or ''}")
                logger.info(
                    "created topic %s (%d partitions, replication %d)",
                    name,
                    self._config.partitions,
                    replication,
                )
        except _CONNECT_ERRORS as exc:
            raise BusError(f"cannot create topics {list(topics)}: {_connect_error(exc)}") from exc
        finally:
            await _stop_quietly(admin.close, self._close_timeout_s, "the admin client")

    async def ping(self) -> None:
        timeout_s = (self._options["ping_timeout_ms"] or 3_000) / 1000
        try:
            async with asyncio.timeout(timeout_s):
                producer = await self._ensure_producer()
                await producer.client.fetch_all_metadata()
        except TimeoutError as exc:
            raise BusError(
                f"Kafka at {self._config.hosts} did not answer within {timeout_s} s"
            ) from exc
        except KafkaError as exc:
            raise BusError(f"Kafka at {self._config.hosts} is unreachable: {exc}") from exc
