"""Delivery: queued lines → ``POST {EDGE_INGEST_URL}/v1/edge/records``, batch by batch.

A line leaves the queue only after a 2xx for its batch. Connection errors, timeouts, 408, 425,
429 (``Retry-After`` honoured) and 5xx are retried with backoff (``TIMEOUT`` times ``TIMEOUT_DECAY``
up to ``MAX_TIMEOUT``, reset on success). 401/403: one log sentence naming ``EDGE_TOKEN``, then
retries at the maximum backoff, keeping everything (calllogger exits there, and loses its queue).
Another 4xx that names refused records moves those to the ``rejected`` table and delivers the
rest; one that names none (the batch itself is refused) keeps everything and retries at the
maximum, since sending the same lines again cannot be told apart from a setting to fix.

Ingest is idempotent on (device, seq), so a batch sent twice (a lost answer, a restart between
the 2xx and the delete) is stored once.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import time
from typing import Any

from cdr_ingest.edge import metrics
from cdr_ingest.edge.http import HttpClient, HttpError, Response
from cdr_ingest.edge.queue import Line, LineQueue
from cdr_ingest.edge.settings import EdgeSettings
from cdr_ingest.edge.sources import Backoff

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 425, 429})


def retry_after_s(value: str | None) -> float:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), 0 when absent or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - time.time())


def batch_body(
    device: str, settings: EdgeSettings, source: str, lines: list[Line]
) -> dict[str, Any]:
    return {
        "device": device,
        "pbx_timezone": settings.pbx_timezone,
        "source": source,
        "records": [
            {
                "seq": line.seq,
                "captured_at": line.captured_at,
                "line_b64": base64.b64encode(line.line).decode(),
            }
            for line in lines
        ],
    }


class Delivery:
    def __init__(
        self,
        settings: EdgeSettings,
        queue: LineQueue,
        device: str,
        source: str,
        client: HttpClient,
        wake: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.device = device
        self.source = source
        self.client = client
        self.wake = wake
        self.backoff = Backoff(settings)
        self.url = f"{settings.ingest_url}/v1/edge/records"
        self.path = "/v1/edge/records"
        self.delivered = 0
        self.last_error: str | None = None
        self._auth_logged = False

    def headers(self) -> dict[str, str]:
        if self.settings.token:
            return {"Authorization": f"Bearer {self.settings.token}"}
        return {}

    async def run_once(self) -> None:
        """Deliver the oldest batch (waiting for lines or for the backoff as needed)."""
        lines = self.queue.peek(self.settings.batch_size)
        if not lines:
            self.wake.clear()
            await self.wake.wait()
            return
        delay = await self.send(lines)
        if delay:
            metrics.DELIVERY_FAILURES.inc()
            await asyncio.sleep(delay)

    async def send(self, lines: list[Line]) -> float:
        """Send one batch; return how long to wait before the next attempt (0: go on)."""
        body = batch_body(self.device, self.settings, self.source, lines)
        try:
            answer = await self.client.post_json(
                self.path, body, headers=self.headers(), timeout=self.settings.request_timeout_s
            )
        except HttpError as exc:
            return self._retry(str(exc))
        status = answer.status_code
        if 200 <= status < 300:
            self.queue.remove(line.seq for line in lines)
            self.delivered += len(lines)
            self.backoff.reset()
            self.last_error = None
            self._auth_logged = False
            return 0.0
        if status in (401, 403):
            if not self._auth_logged:
                log.error(
                    "ingest refused the agent's credentials (HTTP %d): set EDGE_TOKEN to a "
                    "token ingest accepts (INGEST_TOKENS); %d lines are kept and retried every "
                    "%gs",
                    status,
                    self.queue.depth,
                    self.settings.max_timeout_s,
                )
                self._auth_logged = True
            self.last_error = f"HTTP {status}: EDGE_TOKEN refused"
            self.backoff.at_maximum()
            return self.backoff.step()
        if status in RETRY_STATUS or status >= 500:
            return self._retry(f"HTTP {status}", retry_after_s(answer.headers.get("retry-after")))
        return self._refused(lines, answer)

    def _retry(self, error: str, at_least: float = 0.0) -> float:
        delay = self.backoff.step(at_least)
        if error != self.last_error:
            log.warning("delivery to %s failed (%s); retrying in %.1fs", self.url, error, delay)
        self.last_error = error
        return delay

    def _refused(self, lines: list[Line], answer: Response) -> float:
        try:
            data = answer.json()
        except ValueError:
            data = {}
        named = data.get("rejected") if isinstance(data, dict) else None
        in_batch = {line.seq for line in lines}
        refused: dict[int, tuple[str, str]] = {}
        for item in named if isinstance(named, list) else []:
            if isinstance(item, dict) and item.get("seq") in in_batch:
                refused[int(item["seq"])] = (
                    str(item.get("error", "rejected")),
                    str(item.get("detail", "")),
                )
        if not refused:
            detail = data.get("detail") if isinstance(data, dict) else None
            self.last_error = f"HTTP {answer.status_code}: {detail or answer.text[:200]}"
            log.error(
                "ingest refused a whole batch (%s); the lines are kept and retried every %gs",
                self.last_error,
                self.settings.max_timeout_s,
            )
            self.backoff.at_maximum()
            return self.backoff.step()
        self.queue.reject(refused)
        metrics.REJECTED.inc(len(refused))
        log.warning(
            "ingest refused %d of %d lines (first: seq %d, %s); they are in the rejected "
            "table (cdrflow edge status), the rest is re-sent",
            len(refused),
            len(lines),
            min(refused),
            refused[min(refused)][1],
        )
        return 0.0
