"""The Management Node history API client: paging through ``meta.next``, retries, TLS, Basic auth.

At most ``MAX_IN_FLIGHT`` requests are in flight at once (a semaphore shared by every stream of
one client), because the Management Node serves its admin UI from the same process. Every page
is followed until ``meta.next`` is null; pex_data_collector's single request with a big
``limit`` silently lost every record past it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from cdr_ingest.pexip.metrics import PEXIP_REQUESTS, PEXIP_RETRIES
from cdr_ingest.pexip.records import BadRecord, Page, RecordType, format_pexip_time, parse_page
from cdr_ingest.pexip.settings import PexipSettings

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 2
HISTORY_PATH = "/api/admin/history/v1/{type}/"


class PullFailed(Exception):
    """The pull cannot go on; the message is the one sentence the command prints."""


class AuthFailed(PullFailed):
    pass


def tls_verify(settings: PexipSettings) -> ssl.SSLContext | bool:
    """What httpx verifies the node's certificate with: the system CAs, PEXIP_CA_FILE, or off."""
    if not settings.verify_tls:
        return False
    if settings.ca_file is not None:
        try:
            return ssl.create_default_context(cafile=str(settings.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise PullFailed(f"PEXIP_CA_FILE {settings.ca_file} cannot be loaded: {exc}") from exc
    return True


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), capped."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), cap)


class HistoryClient:
    def __init__(
        self,
        settings: PexipSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.base = settings.require_url()
        if self.base.startswith("http://"):
            log.warning(
                "PEXIP_URL is plain http: the Management Node password crosses the network "
                "unencrypted (use https outside tests)"
            )
        self.backoff_s = backoff_s
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests seen in flight at once (tests read it)
        self._http = httpx.AsyncClient(
            base_url=self.base,
            auth=httpx.BasicAuth(settings.username, settings.secret()),
            verify=tls_verify(settings),
            timeout=settings.timeout_s,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )

    async def __aenter__(self) -> HistoryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    def first_path(self, rtype: RecordType, since: datetime | None, until: datetime | None) -> str:
        query: dict[str, Any] = {"limit": self.settings.page_size, "offset": 0}
        if since is not None:
            query["end_time__gte"] = format_pexip_time(since)
        if until is not None:
            query["end_time__lt"] = format_pexip_time(until)
        return HISTORY_PATH.format(type=rtype.value) + "?" + urlencode(query)

    def next_path(self, next_ref: str) -> str:
        """meta.next as a path on the configured node: credentials never go to another host."""
        target = urlsplit(urljoin(self.base + "/", next_ref))
        base = urlsplit(self.base)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise PullFailed(
                f"the node's meta.next points at another host ({target.netloc}); refusing to "
                "send the credentials there"
            )
        return target.path + ("?" + target.query if target.query else "")

    async def get_page(self, path: str, rtype: RecordType) -> Page:
        value = await self.get_json(path, rtype.value)
        try:
            return parse_page(value)
        except BadRecord as exc:
            raise PullFailed(f"the node's answer to {path} is not a history list: {exc}") from exc

    async def get_json(self, path: str, label: str) -> Any:
        attempt = 0
        while True:
            wait: float | None
            try:
                async with self._slots:
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        resp = await self._http.get(path)
                    finally:
                        self.in_flight -= 1
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise PullFailed(
                        f"the Management Node's TLS certificate is not trusted ({self.base}); "
                        "give its CA in PEXIP_CA_FILE"
                    ) from exc
                PEXIP_REQUESTS.labels(label, "error").inc()
                reason, wait = f"{type(exc).__name__}: {exc}", None
            else:
                PEXIP_REQUESTS.labels(label, str(resp.status_code)).inc()
                if resp.status_code in (401, 403):
                    raise AuthFailed(
                        f"the Management Node refused the credentials ({resp.status_code}); "
                        "check PEXIP_USERNAME and PEXIP_PASSWORD (or PEXIP_PASSWORD_FILE)"
                    )
                if resp.status_code == 200:
                    try:
                        return resp.json()
                    except ValueError as exc:
                        raise PullFailed(f"the node's answer to {path} is not JSON") from exc
                if resp.status_code != 429 and resp.status_code < 500:
                    raise PullFailed(
                        f"the Management Node answered {resp.status_code} to {path}: "
                        f"{resp.text[:200]}"
                    )
                reason = f"HTTP {resp.status_code}"
                wait = retry_after(resp.headers.get("retry-after"), self.settings.retry_max_s)
            if attempt >= self.settings.retries:
                raise PullFailed(
                    f"the Management Node did not answer {path} after {attempt + 1} attempts "
                    f"({reason})"
                )
            if wait is None:
                wait = min(self.backoff_s * 2**attempt, self.settings.retry_max_s)
            attempt += 1
            PEXIP_RETRIES.labels(label).inc()
            log.warning("GET %s: %s; retry %d in %.1f s", path, reason, attempt, wait)
            await asyncio.sleep(wait)
