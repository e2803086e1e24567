"""Dependencies of the recordings routes: the service, and the bearer-token check.

With ``RECORDINGS_TOKENS`` set, every recordings route needs ``Authorization: Bearer <token>``
(or ``?access_token=<token>``, RFC 6750 §2.3, for an ``<audio src>`` that cannot send a header).
Tokens are compared in constant time against every configured entry; a refusal is a 401 JSON with
a ``WWW-Authenticate: Bearer`` challenge. Tokens are never logged.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request
from pydantic import SecretStr

from cdr_recordings.service import RecordingsService
from cdrkit.app import component
from cdrmodel.errors import Unauthorized

REALM = "cdrflow recordings"


class TokenRequired(Unauthorized):
    def __init__(self, detail: str, error: str | None = None) -> None:
        super().__init__(detail)
        challenge = f'Bearer realm="{REALM}"'
        if error:
            challenge += f', error="{error}"'
        self.headers = {"WWW-Authenticate": challenge}


@lru_cache(maxsize=8)
def _tokens(secret: SecretStr) -> tuple[bytes, ...]:
    return tuple(t.strip().encode() for t in secret.get_secret_value().split(","))


def check_token(tokens: tuple[bytes, ...], presented: bytes) -> bool:
    found = False
    for known in tokens:
        found |= hmac.compare_digest(presented, known)
    return found


async def get_service(request: Request) -> RecordingsService:
    service: RecordingsService = component(request, "recordings").service
    return service


async def require_token(request: Request) -> None:
    service = await get_service(request)
    secret = service.settings.tokens
    if secret is None:
        return
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise TokenRequired("use Authorization: Bearer <token>", "invalid_request")
        presented = value.strip()
    else:
        presented = request.query_params.get("access_token", "")
        if not presented:
            raise TokenRequired("the recordings API needs a bearer token")
    if not check_token(_tokens(secret), presented.encode("latin-1", "replace")):
        raise TokenRequired("the bearer token was not accepted", "invalid_token")


ServiceDep = Annotated[RecordingsService, Depends(get_service)]
