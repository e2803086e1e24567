"""Who may read and change what: the one bearer-token helper every service uses.

``CDRFLOW_API_TOKENS`` holds comma-separated ``role:token`` pairs; the roles are ordered
``read`` < ``operate`` < ``admin`` and a token is good for its role and every role below it:

- ``read``: CDRs, raw documents, dead letters, charges, bills, tariffs, alerts, stats, recordings;
- ``operate``: dead-letter retry, alert deletion, rerate;
- ``admin``: tariffs, tariff assignments, adjustments, plugin reload.

``/healthz``, ``/readyz`` and ``/metrics`` stay open. The ingest credentials (``INGEST_TOKENS``,
``INGEST_BASIC_AUTH``) are a separate set, so a switch that posts CDRs cannot read calls; ingest
uses ``match_secret``, ``bearer_value`` and ``AuthenticationRequired`` from here.

A request without a token is a 401 with a ``WWW-Authenticate: Bearer`` challenge; a token below
the route's role is a 403. Every presented token is compared in constant time with every
configured one, so neither timing nor work done says which token (or how much of one) matched.
Each write that passes is logged once on ``cdrflow.audit``: role, the token's position in the
list (``token#2``), method, route and its path parameters; never a token.

With no tokens configured, the APIs are open (for evaluation) and ``log_access_mode`` warns at
start-up.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from cdrmodel.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)
audit_log = logging.getLogger("cdrflow.audit")

REALM = "cdrflow"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Role(enum.IntEnum):
    READ = 1
    OPERATE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class AuthenticationRequired(Unauthorized):
    """A 401 that carries its challenge (``cdrkit.app`` copies ``headers`` onto the answer)."""

    def __init__(self, detail: str, challenge: str) -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": challenge}


def match_secret(presented: bytes, known: Iterable[bytes]) -> int | None:
    """The 1-based position of ``presented`` among ``known``, else None. Every entry is compared
    (constant time each, no early exit), so the answer's timing names no entry."""
    found: int | None = None
    for position, secret in enumerate(known, start=1):
        if hmac.compare_digest(presented, secret):
            found = position
    return found


def bearer_value(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, None for another scheme."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: a role and the position of its token in ``CDRFLOW_API_TOKENS``."""

    role: Role
    position: int

    def __str__(self) -> str:
        return f"{self.role.label} token#{self.position}"


@dataclass(frozen=True, slots=True)
class ApiTokens:
    """The parsed ``CDRFLOW_API_TOKENS``: roles and secrets, in configuration order."""

    roles: tuple[Role, ...] = ()
    secrets: tuple[bytes, ...] = ()

    @property
    def open(self) -> bool:
        return not self.secrets

    def identify(self, presented: str) -> Principal | None:
        position = match_secret(presented.encode("utf-8", "surrogateescape"), self.secrets)
        if position is None:
            return None
        return Principal(self.roles[position - 1], position)

    def describe(self) -> str:
        counts = {role: self.roles.count(role) for role in Role}
        return ", ".join(f"{n} {role.label}" for role, n in counts.items() if n)


def parse_api_tokens(value: str | None) -> ApiTokens:
    """``role:token[,role:token]`` → ``ApiTokens``; ``ValueError`` naming the entry, never the
    secret, when one is malformed. An empty value means none (open)."""
    if value is None or not value.strip():
        return ApiTokens()
    roles: list[Role] = []
    secrets: list[bytes] = []
    for position, entry in enumerate(value.split(","), start=1):
        role, sep, token = entry.strip().partition(":")
        if not sep or not token.strip():
            raise ValueError(
                f"entry {position} is not role:token (roles read, operate, admin; entries "
                "separated by commas)"
            )
        try:
            roles.append(Role[role.strip().upper()])
        except KeyError:
            raise ValueError(
                f"entry {position} has the role {role.strip()!r}; roles are read, operate, admin"
            ) from None
        secret = token.strip().encode()
        if len(secret) < 16:
            raise ValueError(f"entry {position}: a token must be at least 16 characters long")
        if secret in secrets:
            raise ValueError(f"entry {position} repeats the token of an earlier entry")
        secrets.append(secret)
    return ApiTokens(tuple(roles), tuple(secrets))


def log_access_mode(tokens: ApiTokens, title: str) -> None:
    """Called at start-up: say who may use the APIs, and warn loudly when anyone may."""
    if tokens.open:
        log.warning(
            "%s: the APIs are open to anyone who reaches them (reads of calls and recordings, "
            "tariff changes): set CDRFLOW_API_TOKENS (role:token,...) to require tokens",
            title,
        )
    else:
        log.info("%s: API tokens required (%s)", title, tokens.describe())


# The security schemes the OpenAPI document shows (auto_error off: the checks below answer).
_bearer = HTTPBearer(auto_error=False, description="a token of CDRFLOW_API_TOKENS")
_query = APIKeyQuery(
    name="access_token",
    auto_error=False,
    description="the same token in the query (RFC 6750 §2.3) where a header cannot be sent "
    "(<audio src>, EventSource); prefer the header elsewhere: URLs reach access logs",
)


# Declared for the OpenAPI document's security schemes; the checks read the raw header.
BearerHeader = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
QueryToken = Annotated[str | None, Depends(_query)]


def _tokens(request: Request) -> ApiTokens:
    tokens: ApiTokens = request.app.state.cdrflow.api_tokens
    return tokens


def _challenge(error: str | None = None) -> str:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}"'
    return challenge


def _check(
    request: Request, presented: str | None, malformed: bool, role: Role
) -> Principal | None:
    tokens = _tokens(request)
    if tokens.open:
        return None
    if malformed:
        raise AuthenticationRequired(
            "use Authorization: Bearer <token>", _challenge("invalid_request")
        )
    if not presented:
        raise AuthenticationRequired(
            f"this endpoint needs a bearer token with the {role.label} role", _challenge()
        )
    principal = tokens.identify(presented)
    if principal is None:
        raise AuthenticationRequired(
            "the bearer token was not accepted", _challenge("invalid_token")
        )
    if principal.role < role:
        raise Forbidden(
            f"this endpoint needs the {role.label} role; the token has {principal.role.label}"
        )
    if request.method in WRITE_METHODS:
        _audit(request, principal)
    return principal


def _audit(request: Request, principal: Principal) -> None:
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    target = ",".join(f"{k}={v!r}" for k, v in request.path_params.items())
    audit_log.info(
        "audit: %s %s %s%s",
        principal,
        request.method,
        template,
        f" {target}" if target else "",
    )


PrincipalCheck = Callable[..., Awaitable[Principal | None]]


def require(role: Role, *, query_token: bool = False) -> PrincipalCheck:
    """A FastAPI dependency: the caller's ``Principal`` (None while the APIs are open), or a
    401/403. With ``query_token``, ``?access_token=`` is accepted too (for ``<audio src>`` and
    ``EventSource``, which cannot send a header)."""
    if query_token:

        async def check_with_query(
            request: Request,
            header: BearerHeader,
            access_token: QueryToken,
        ) -> Principal | None:
            raw = request.headers.get("authorization")
            if raw:
                value = bearer_value(raw)
                return _check(request, value, value is None, role)
            return _check(request, access_token, False, role)

        return check_with_query

    async def check(request: Request, header: BearerHeader) -> Principal | None:
        raw = request.headers.get("authorization")
        value = bearer_value(raw) if raw else None
        return _check(request, value, bool(raw) and value is None, role)

    return check


READ: Any = Depends(require(Role.READ))
OPERATE: Any = Depends(require(Role.OPERATE))
ADMIN: Any = Depends(require(Role.ADMIN))
READ_OR_QUERY: Any = Depends(require(Role.READ, query_token=True))
