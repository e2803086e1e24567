"""Who may post: HTTP Basic (mod_xml_cdr / mod_json_cdr ``cred``) and bearer tokens.

Credentials come from ``INGEST_BASIC_AUTH`` (``user:pass[,user2:pass2]``) and ``INGEST_TOKENS``
(``tok1[,tok2]``). With neither set, access is open and a warning is logged at start-up. A refused
post is a real 401 with a ``WWW-Authenticate`` challenge, never a 2xx: the switch keeps the CDR
(retries, then its ``err-log-dir``). curl's ``auth-scheme`` ``any`` (old mod_xml_cdr) first posts
without credentials and needs that challenge to send them.

Every secret is compared in constant time against every configured entry, so neither the timing
nor the work done tells a caller which user exists. These credentials are the switches' own: the
read/operate/admin tokens of the other APIs are ``CDRFLOW_API_TOKENS`` (``cdrkit.auth``), so a
switch's credentials never read a call.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from dataclasses import dataclass
from functools import lru_cache

from fastapi import Request
from pydantic import SecretStr

from cdr_ingest.metrics import AUTH_REJECTIONS
from cdr_ingest.settings import IngestSettings
from cdrkit.app import component
from cdrkit.auth import AuthenticationRequired, match_secret

__all__ = ["AuthenticationRequired", "Credentials", "authenticate", "require_poster"]

log = logging.getLogger(__name__)

REALM = "cdrflow"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The parsed ``INGEST_BASIC_AUTH`` and ``INGEST_TOKENS``."""

    basic: tuple[tuple[bytes, bytes], ...] = ()  # (user, password), UTF-8
    tokens: tuple[bytes, ...] = ()

    @property
    def open(self) -> bool:
        return not self.basic and not self.tokens

    def challenge(self) -> str:
        schemes = []
        if self.basic or self.open:
            schemes.append(f'Basic realm="{REALM}", charset="UTF-8"')
        if self.tokens:
            schemes.append(f'Bearer realm="{REALM}"')
        return ", ".join(schemes)

    def check_basic(self, user: bytes, password: bytes) -> str | None:
        """The user name when ``user:password`` is configured, else ``None``."""
        found: str | None = None
        for known_user, known_password in self.basic:
            # Both comparisons always run (`&`, not `and`): no short cut on a known user name.
            if hmac.compare_digest(user, known_user) & hmac.compare_digest(
                password, known_password
            ):
                found = known_user.decode()
        return found

    def check_token(self, token: bytes) -> str | None:
        """``token#N`` (N counts from 1 in ``INGEST_TOKENS``) for a configured token, else None;
        the token itself never reaches an envelope or a log line."""
        position = match_secret(token, self.tokens)
        return None if position is None else f"token#{position}"


def parse_basic_auth(value: str) -> tuple[tuple[bytes, bytes], ...]:
    """``user:pass[,user2:pass2]`` → pairs; ``ValueError`` (naming no secret) when malformed."""
    pairs = []
    for position, entry in enumerate(value.split(","), start=1):
        user, sep, password = entry.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(
                f"entry {position} is not user:password (a non-empty user and password, "
                "entries separated by commas)"
            )
        pairs.append((user.encode(), password.encode()))
    return tuple(pairs)


def parse_tokens(value: str) -> tuple[bytes, ...]:
    tokens = tuple(tok.strip().encode() for tok in value.split(","))
    if not all(tokens):
        raise ValueError("an empty token; separate tokens with single commas")
    return tokens


@lru_cache(maxsize=8)
def _credentials(basic: SecretStr | None, tokens: SecretStr | None) -> Credentials:
    # SecretStr hashes by its value, so the cache holds one parse per configuration.
    return Credentials(
        basic=parse_basic_auth(basic.get_secret_value()) if basic else (),
        tokens=parse_tokens(tokens.get_secret_value()) if tokens else (),
    )


def credentials(settings: IngestSettings) -> Credentials:
    return _credentials(settings.basic_auth, settings.tokens)


def log_access_mode(settings: IngestSettings) -> None:
    """Called at start-up: say how posts are authenticated, and warn loudly when they are not."""
    creds = credentials(settings)
    if creds.open:
        log.warning(
            "ingest accepts CDR posts from anyone: set INGEST_BASIC_AUTH (user:pass) "
            "and/or INGEST_TOKENS to require credentials"
        )
    else:
        log.info(
            "ingest requires credentials: %d basic user(s), %d bearer token(s)",
            len(creds.basic),
            len(creds.tokens),
        )


def authenticate(creds: Credentials, header: str | None) -> str | None:
    """The authenticated user for an ``Authorization`` header (``None`` with open access), or
    ``AuthenticationRequired``. Basic gives the user name, a bearer token ``token#N``."""
    if creds.open:
        return None
    if not header:
        return _reject(creds, "missing", "this endpoint needs credentials (HTTP Basic or Bearer)")
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "basic" and creds.basic:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return _reject(creds, "malformed", "the Basic credentials are not valid base64")
        user, sep, password = decoded.partition(b":")
        if not sep:
            return _reject(creds, "malformed", "the Basic credentials are not user:password")
        found = creds.check_basic(user, password)
    elif scheme == "bearer" and creds.tokens:
        found = creds.check_token(value.encode("latin-1"))  # header bytes as sent
    else:
        return _reject(creds, "malformed", f"the {scheme or '(empty)'} scheme is not accepted")
    if found is None:
        return _reject(creds, "invalid", "the credentials were not accepted")
    return found


def _reject(creds: Credentials, reason: str, detail: str) -> str:
    AUTH_REJECTIONS.labels(reason).inc()
    raise AuthenticationRequired(detail, creds.challenge())


async def require_poster(request: Request) -> str | None:
    """FastAPI dependency for the ingest POST routes: the authenticated user, or ``None`` when
    access is open. Runs before the body is read, so a refused post costs no body I/O."""
    settings: IngestSettings = component(request, "ingest").service.settings
    return authenticate(credentials(settings), request.headers.get("authorization"))
