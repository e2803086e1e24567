"""The parser's work: raw envelopes in, stored CDRs and ``cdr.normalized`` out.

Per batch (see ``cdrkit.bus.runner`` for the commit side):
1. decode and map every message; a claim-checked payload (``payload_ref``) is first fetched from
   the object store and checked against the envelope's sha256 (concurrently for the batch; a
   store that cannot be reached retries the batch, an object that is gone or altered is a dead
   letter); what cannot be mapped becomes a dead letter with its reason;
2. one database transaction stores the CDRs and raw payloads (idempotent on call id) and the dead
   letters (idempotent on envelope id, or topic/partition/offset when undecodable);
3. the CDRs are published to ``cdr.normalized`` and the dead letters to ``cdr.dlq`` (concurrently
   with step 2), and both are acknowledged before the loop commits the consumed offsets.
A crash between any two steps redelivers the batch; steps 2 and 3 are repeat-safe, so downstream
sees each call at least once and consumers of ``cdr.normalized`` dedupe on the call id.

Call start/end halves (``call.event``) are not mapped alone: step 2 pairs them with the stored
halves in the same transaction (``cdr_parser.pairing``), and step 3 follows it, since only then are
the CDRs they complete known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from cdr_parser.ahead import ParsedAhead, parse_all
from cdr_parser.dispatch import Parsed
from cdr_parser.metrics import (
    CDRS,
    DEAD_LETTER_RETRIES,
    DEAD_LETTERS,
    EVENT_HALVES,
    FETCHED_BYTES,
)
from cdr_parser.outcomes import (
    Checkin,
    Conference,
    Event,
    Failure,
    Outcome,
    RawOnly,
    conference_link,
    outcome_of,
)
from cdr_parser.pairing import EventWork, Incoming, Resolution, Rows
from cdr_parser.repository import CdrRepository, ConferenceRepository, PexipRows
from cdr_parser.rows import (
    CDR_TEXT,
    RAW_TEXT,
    cdr_row,
    fit_text,
    raw_row,
    unstorable,
)
from cdr_parser.settings import ParserSettings
from cdrkit.bus import Message, Producer, Record
from cdrkit.bus.runner import StopConsuming, poison_reason
from cdrkit.objects import ObjectNotFound, ObjectStore
from cdrkit.pacing import Slicer
from cdrmodel import DeadLetter, PayloadKind, RawEnvelope, sha256_hex, topics
from cdrmodel.errors import InvalidInput, NotFound, Transient, UnmappableRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

FETCH_CONCURRENCY = 8


RETRY_HEADER = "cdrflow-retry"  # on a dead letter re-published by an operator: its letter id


def is_retry(msg: Message) -> bool:
    return bool(msg.headers) and any(name == RETRY_HEADER for name, _ in msg.headers)


class RetryPending(InvalidInput):
    """A retry of this dead letter is already on its way (idempotent while pending)."""

    code = "retry_pending"
    status = 409


class RetryRateLimited(InvalidInput):
    code = "rate_limited"
    status = 429

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class NothingToRetry(InvalidInput):
    """A dead letter that was never a decodable envelope (only its raw bytes are kept)."""

    code = "nothing_to_retry"
    status = 409


class PayloadChecksumMismatch(InvalidInput):
    code = "payload_checksum"


class BadPayloadRef(InvalidInput):
    code = "bad_payload_ref"


def _with_call_id(row: dict[str, Any], call_id: str) -> dict[str, Any]:
    """``row`` (the envelope's ``raw_row(env, "", now)``, checked and not used since) as
    ``raw_row(env, call_id, now)``: the same keys in the same order, the call id set."""
    row["call_id"] = call_id
    return row


class ParserService:
    def __init__(
        self,
        settings: ParserSettings,
        repo: CdrRepository,
        producer: Producer,
        store: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.conferences = ConferenceRepository(repo.sessions)
        self.producer = producer
        self.store = store
        # The flood window: True = dead letter, for the messages read from the topic that were
        # not an operator's retry (retries never count: retrying one letter 450 times must not
        # stop the parser).
        self._recent: deque[bool] = deque(maxlen=settings.flood_window)
        self._retries = TokenBucket(settings.retry_rate_per_s, settings.retry_burst)
        # Claim-checked payloads fetched at once: bounds the memory a batch of 5 MB CDRs holds.
        self._fetch_slots = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def handle_batch(self, batch: Sequence[Message]) -> None:
        recent = self._recent.copy()
        try:
            await self._handle_batch(batch)
        except BaseException:
            # The loop retries a failed batch: its records count once in the flood window, not
            # once per attempt (a bus outage must not turn one dead letter into a flood).
            self._recent = recent
            raise

    async def _handle_batch(self, batch: Sequence[Message]) -> None:
        now = datetime.now(UTC)
        cdr_rows: dict[str, dict[str, Any]] = {}
        raw_rows: dict[str, dict[str, Any]] = {}
        normalized: list[Record] = []
        dead: dict[str, tuple[dict[str, Any], DeadLetter]] = {}
        envelopes: list[RawEnvelope | None] = []
        # Each envelope's raw row as checked below (call id still ""): the row it is stored as,
        # its call id set once known, instead of a second raw_row (issue 15, ninth round).
        checked: dict[int, dict[str, Any]] = {}  # by the envelope's index in the batch
        side = PexipRows()
        # The loops below hold the event loop for the whole batch otherwise (cdrkit.pacing).
        slicer = Slicer()
        for msg in batch:
            await slicer.tick()
            try:
                decoded = RawEnvelope.from_json(msg.value)
            except ValidationError as exc:
                envelopes.append(None)
                self._dead_letter(
                    dead,
                    msg,
                    None,
                    "decode",
                    "bad_envelope",
                    f"not a raw envelope: {exc.error_count()} validation errors: "
                    f"{exc.errors()[0]['msg']}",
                    now,
                )
                continue
            raw = raw_row(decoded, "", now)
            problem = unstorable(raw, RAW_TEXT)
            if problem is not None:
                envelopes.append(None)
                reason = f"the envelope cannot be stored: {problem}"
                self._dead_letter(dead, msg, decoded, "decode", "bad_envelope", reason, now)
                continue
            checked[len(envelopes)] = raw
            envelopes.append(decoded)
        # Claim checks are fetched, verified and mapped concurrently (a Transient store error
        # raises out of here, so the loop retries the whole batch); inline payloads are mapped
        # in place. Results are then taken in batch order.
        ahead = ParsedAhead(envelopes) if self.settings.parse_in_thread else None
        claimed = await self._map_claimed(
            {i: env for i, env in enumerate(envelopes) if env and env.payload_ref is not None}
        )
        incoming: list[Incoming] = []
        checkins: list[dict[str, Any]] = []
        not_calls = 0  # ring notices and check-ins: neither stored CDRs nor duplicates
        for i, (msg, env) in enumerate(zip(batch, envelopes, strict=True)):
            if env is None:
                continue
            await slicer.tick()
            if i in claimed:
                outcome = claimed[i]
            else:
                outcome = self._map(env, None, await ahead.take(i) if ahead else None)
            if isinstance(outcome, Failure):
                self._dead_letter(dead, msg, env, outcome.stage, outcome.error, outcome.reason, now)
                continue
            if isinstance(outcome, RawOnly | Checkin):
                self._recent.append(False)
                not_calls += 1
                if isinstance(outcome, Checkin):
                    checkins.append(outcome.row)
                elif outcome.call_id not in raw_rows:  # the first wins (it was a setdefault)
                    raw_rows[outcome.call_id] = _with_call_id(checked[i], outcome.call_id)
                continue
            if isinstance(outcome, Event):
                incoming.append(Incoming(i, outcome.event, env, outcome.payload))
                continue
            if isinstance(outcome, Conference):
                self._recent.append(False)
                side.conferences.append(outcome.row)
                conference_id = outcome.row["conference_id"]
                side.links.extend(
                    {"call_id": c, "conference_id": conference_id}
                    for c in outcome.row["participant_ids"]
                )
                continue
            cdr = outcome
            if cdr.call_id in cdr_rows:
                self._count(msg, False)
                continue  # the same call twice in one batch: the first wins, as in the store
            row = cdr_row(cdr, now)
            problem = unstorable(row, CDR_TEXT)
            if problem is not None:
                reason = f"the CDR cannot be stored: {problem}"
                self._dead_letter(dead, msg, env, "map", "unstorable", reason, now)
                continue
            self._count(msg, False)
            cdr_rows[cdr.call_id] = row
            raw_rows[cdr.call_id] = _with_call_id(checked[i], cdr.call_id)
            if (link := conference_link(cdr)) is not None:
                side.links.append(link)
            normalized.append(Record(value=cdr.to_json(), key=cdr.call_id.encode()))

        # Check-ins first, in their own (repeat-safe) transaction: a failure retries the batch.
        await self.repo.upsert_devices(checkins)
        if incoming:
            await self._store_with_events(
                batch, now, incoming, cdr_rows, raw_rows, normalized, dead, side
            )
            self._check_flood()
            return

        # The store and the publishes are independent and all must finish before the offsets
        # are committed, so they overlap: a failure of either retries the whole batch, and
        # both sides are repeat-safe. The outcomes are counted as soon as the store's
        # transaction has committed, and the two run to their end together (``_committed``):
        # a consumer cancelled while a publish is still in flight, or while the commit's own
        # reply or the connection's return to the pool is awaited (ConsumeLoop.abort, a stop
        # that timed out), must not leave stored CDRs uncounted, to be counted as duplicates
        # when the batch is redelivered.
        async def store_and_count() -> None:
            inserted = await self.repo.store_batch(
                list(cdr_rows.values()),
                list(raw_rows.values()),
                [row for row, _ in dead.values()],
                pexip=side,
            )
            CDRS.labels("stored").inc(len(inserted))
            CDRS.labels("duplicate").inc(
                len(batch) - len(dead) - len(inserted) - len(side.conferences) - not_calls
            )
            CDRS.labels("dead_letter").inc(len(dead))

        await asyncio.gather(
            _committed(store_and_count()),
            self._publish(topics.NORMALIZED, normalized),
            self._publish(topics.DLQ, [Record(value=d.to_json()) for _, d in dead.values()]),
        )
        self._check_flood()

    async def _store_with_events(
        self,
        batch: Sequence[Message],
        now: datetime,
        incoming: list[Incoming],
        cdr_rows: dict[str, dict[str, Any]],
        raw_rows: dict[str, dict[str, Any]],
        normalized: list[Record],
        dead: dict[str, tuple[dict[str, Any], DeadLetter]],
        side: PexipRows,
    ) -> None:
        """A batch with call start/end halves: they are paired inside the store transaction
        (``cdr_parser.pairing``), so the CDRs they complete are known, and published, only once
        it has committed. Every complete call a half of this batch belongs to is published again
        (``cdr.normalized`` consumers dedupe on the call id), so a crash after the commit and
        before the publish loses nothing: the redelivered halves publish it."""
        pair_dead: dict[str, tuple[dict[str, Any], DeadLetter]] = {}

        def settle(res: Resolution) -> tuple[Rows, Rows, Rows]:
            for rej in res.rejections:
                item = rej.incoming
                self._dead_letter(
                    pair_dead, batch[item.index], item.env, "pair", rej.error, rej.reason, now
                )
            rejected = {id(rej.incoming) for rej in res.rejections}
            for item in incoming:
                if id(item) not in rejected:
                    self._count(batch[item.index], False)
            return (
                [cdr_row(res.cdrs[c], now) for c in res.new_calls],
                [{**res.raw[c], "stored_at": now} for c in res.new_calls],
                [row for row, _ in pair_dead.values()],
            )

        work = EventWork(incoming, now, settle, max_duration_s=self.settings.max_call_duration_s)

        async def store_and_count() -> Resolution:
            inserted = await self.repo.store_batch(
                list(cdr_rows.values()),
                list(raw_rows.values()),
                [row for row, _ in dead.values()],
                events=work,
                pexip=side,
            )
            res = work.resolution
            assert res is not None
            # Counted once the store has committed, before the publishes (see _handle_batch).
            EVENT_HALVES.labels("waiting").inc(res.waiting)
            EVENT_HALVES.labels("paired").inc(2 * len(res.new_calls))
            EVENT_HALVES.labels("duplicate").inc(res.duplicates)
            EVENT_HALVES.labels("rejected").inc(len(res.rejections))
            mapped = len(batch) - len(dead) - len(incoming) - len(side.conferences)
            CDRS.labels("stored").inc(len(inserted))
            CDRS.labels("duplicate").inc(max(mapped - len(inserted & cdr_rows.keys()), 0))
            CDRS.labels("dead_letter").inc(len(dead))
            return res

        res = await _committed(store_and_count())
        paired = [Record(value=c.to_json(), key=c.call_id.encode()) for c in res.cdrs.values()]
        letters = [Record(value=d.to_json()) for _, d in (*dead.values(), *pair_dead.values())]
        await asyncio.gather(
            self._publish(topics.NORMALIZED, [*normalized, *paired]),
            self._publish(topics.DLQ, letters),
        )

    def _map(self, env: RawEnvelope, payload: str | None, parsed: Parsed | None = None) -> Outcome:
        return outcome_of(env, payload, self.settings.max_call_duration_s, parsed)

    async def _map_claimed(self, envs: dict[int, RawEnvelope]) -> dict[int, Outcome]:
        if not envs:
            return {}
        tasks = {i: asyncio.create_task(self._fetch_and_map(env)) for i, env in envs.items()}
        try:
            await asyncio.gather(*tasks.values())
        except BaseException:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            raise
        return {i: task.result() for i, task in tasks.items()}

    async def _fetch_and_map(self, env: RawEnvelope) -> Outcome:
        # Mapped while still holding the slot, so at most FETCH_CONCURRENCY payloads are in
        # memory at once; only the (small) CDR outlives the slot.
        async with self._fetch_slots:
            try:
                payload = await self.fetch_payload(env)
            except InvalidInput as exc:
                return Failure("fetch", exc.code, exc.detail)
            if self.settings.parse_in_thread and env.kind is PayloadKind.FREESWITCH_XML:
                # The largest documents (claim checks): their parse alone would hold the loop
                # for tens of ms; one hand-off each (cdr_parser.ahead).
                loop = asyncio.get_running_loop()
                [parsed] = await loop.run_in_executor(None, parse_all, [payload])
                return self._map(env, payload, parsed)
            return self._map(env, payload)

    async def fetch_payload(self, env: RawEnvelope) -> str:
        """The claim-checked payload of ``env``, verified against its sha256.

        ``InvalidInput`` (dead letter) when the object is gone, altered or not this store's;
        ``Transient`` (retry the batch) when the store cannot be reached.
        """
        ref = env.payload_ref
        assert ref is not None
        data = await self.raw_object(ref)
        FETCHED_BYTES.inc(len(data))
        digest = sha256_hex(data)
        if digest != env.sha256:
            raise PayloadChecksumMismatch(
                f"the object {ref} has sha256 {digest} but the envelope says {env.sha256}: "
                "the stored payload was altered or corrupted after ingest accepted it"
            )
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise UnmappableRecord(f"the object {ref} is not UTF-8 text: {exc}") from exc

    async def raw_object(self, ref: str) -> bytes:
        """The bytes behind a ``payload_ref`` (``ObjectNotFound`` when gone)."""
        if self.store is None:
            raise Transient(f"this parser has no object store to fetch {ref} from")
        try:
            return await self.store.get(ref)
        except ObjectNotFound:
            raise
        except InvalidInput as exc:
            raise BadPayloadRef(exc.detail) from exc

    async def _publish(self, topic: str, records: list[Record]) -> None:
        if records:
            await self.producer.send_many(topic, records)

    def _dead_letter(
        self,
        dead: dict[str, tuple[dict[str, Any], DeadLetter]],
        msg: Message,
        env: RawEnvelope | None,
        stage: str,
        error: str,
        reason: str,
        now: datetime,
    ) -> None:
        self._count(msg, True)
        DEAD_LETTERS.labels(error).inc()
        log.warning("dead letter %s: %s: %s", msg, error, reason)
        raw_value = None if env is not None else msg.value.decode("utf-8", errors="replace")
        raw_value, reason = fit_text(raw_value), fit_text(reason) or ""
        letter = DeadLetter(
            stage=stage,
            error=error,
            reason=reason,
            failed_at=now,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            envelope=env.model_dump(mode="json", exclude_none=True) if env else None,
            raw_value=raw_value,
        )
        key = f"{stage}:{env.id}" if env else f"{stage}:{msg.topic}:{msg.partition}:{msg.offset}"
        if len(key) > 200 or "\x00" in key:  # an envelope id the store cannot take as a key
            key = f"{stage}:sha256:{sha256_hex(key)}"
        row = {
            "dedup_key": key,
            "envelope_id": fit_text(env.id, 64) if env else None,
            "call_id": fit_text(env.call_id, 128) if env else None,
            "stage": stage,
            "error": error,
            "reason": reason,
            "topic": msg.topic,
            "partition": msg.partition,
            "offset": msg.offset,
            "envelope": letter.envelope,
            "raw_value": raw_value,
            "created_at": now,
        }
        dead[key] = (row, letter)

    async def dead_letter_poison(self, msg: Message, exc: Exception) -> None:
        """``on_poison`` of the consume loop: ``msg`` failed on its own, every time, somewhere
        the checks above did not foresee (a value the database refuses, a mapper or pairing
        bug). It becomes a dead letter with the error, so the rest of the topic goes on."""
        now = datetime.now(UTC)
        env: RawEnvelope | None = None
        with contextlib.suppress(ValidationError):
            env = RawEnvelope.from_json(msg.value)
        dead: dict[str, tuple[dict[str, Any], DeadLetter]] = {}
        reason = f"the message failed on its own, every time: {poison_reason(exc)}"
        self._dead_letter(dead, msg, env, "store", "poison", reason, now)
        await asyncio.gather(
            self.repo.store_batch([], [], [row for row, _ in dead.values()]),
            self._publish(topics.DLQ, [Record(value=d.to_json()) for _, d in dead.values()]),
        )
        CDRS.labels("dead_letter").inc()
        self._check_flood()

    def _count(self, msg: Message, dead: bool) -> None:
        if not is_retry(msg):
            self._recent.append(dead)

    def _check_flood(self) -> None:
        window = self._recent
        if len(window) < window.maxlen:  # type: ignore[operator]
            return
        bad = sum(window)
        if bad / len(window) >= self.settings.flood_ratio:
            raise StopConsuming(
                f"{bad} of the last {len(window)} records were dead letters: stopped consuming "
                "so a systematic fault does not drain the topic into the dead letters; fix the "
                "cause (see GET /v1/dead-letters) and restart the parser"
            )

    async def retry_dead_letter(self, letter_id: int) -> Any:
        """Re-publish a dead letter's envelope to ``cdr.raw`` so it takes the normal path again:
        stored if the cause is fixed (a mapper fix, a restored object), else dead-lettered once
        more under the same row with a fresh reason. Returns the updated row."""
        row = await self.repo.get_dead_letter(letter_id)
        if row is None:
            raise NotFound(f"no dead letter with id {letter_id}")
        if row.envelope is None:
            raise NothingToRetry(
                f"dead letter {letter_id} was not a decodable raw envelope ({row.error}); "
                "only its raw bytes are kept, so there is nothing to re-publish"
            )
        try:
            env = RawEnvelope.model_validate(row.envelope)
        except ValidationError as exc:
            raise NothingToRetry(
                f"dead letter {letter_id} holds no valid raw envelope: {exc.errors()[0]['msg']}"
            ) from exc
        wait_s = self._retries.take()
        if wait_s:
            raise RetryRateLimited(
                f"more than {self.settings.retry_burst} dead-letter retries at once "
                f"(PARSER_RETRY_RATE_PER_S={self.settings.retry_rate_per_s:g}); try again in "
                f"{wait_s:.1f} s",
                wait_s,
            )
        # Marked before the publish, so a failure of the retry is always later than retried_at
        # (retried_at and retry_count count attempts, even one the bus did not acknowledge).
        now = datetime.now(UTC)
        pending_since = now - timedelta(seconds=self.settings.retry_pending_s)
        if not await self.repo.mark_retried(letter_id, now, pending_since=pending_since):
            raise RetryPending(
                f"a retry of dead letter {letter_id} is pending since {row.retried_at}: it "
                "settles when the parser has processed it (last_failed_at moves past "
                "retried_at if it fails again) or after PARSER_RETRY_PENDING_S "
                f"({self.settings.retry_pending_s:g} s); nothing was re-published"
            )
        key = env.call_id.encode() if env.call_id else None  # the key ingest uses
        headers = ((RETRY_HEADER, str(letter_id).encode()),)
        try:
            send = self.producer.send(topics.RAW, env.to_json(), key=key, headers=headers)
            async with asyncio.timeout(10):
                await send
        except TimeoutError as exc:
            raise Transient(
                "the message bus did not acknowledge the retry in 10 s; try again later"
            ) from exc
        DEAD_LETTER_RETRIES.inc()
        log.info("dead letter %d (envelope %s) re-published to %s", letter_id, env.id, topics.RAW)
        return await self.repo.get_dead_letter(letter_id)


async def _committed(store: Coroutine[Any, Any, T]) -> T:
    """Run ``store`` (a batch's store transaction and the counting of its outcomes) to its end
    even when the caller is cancelled. A cancellation that arrives once PostgreSQL has committed
    (in the commit's reply, or the connection's return to the pool) would otherwise leave the
    batch stored and uncounted, and its redelivery would count it as duplicates (ci-alone,
    issue 15's tenth round: 1,900 of 2,000 counted). The caller still sees the cancellation at
    once; the transaction and the count finish behind it."""
    task = asyncio.ensure_future(store)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a shielded store's outcome as seen: when its caller was cancelled nobody awaits it,
    and a failure is the batch's, which is redelivered (the failure is logged by whoever did
    await it, else here)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("a batch's store ended with %r", exc)
