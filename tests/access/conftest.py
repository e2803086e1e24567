from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from cdrflow.platform import create_allinone_app
from tests.e2e.conftest import serving

TOKENS = {
    "read": "read-token-0123456789abcdef",
    "operate": "operate-token-0123456789abcdef",
    "admin": "admin-token-0123456789abcdef",
}
API_TOKENS = ",".join(f"{role}:{token}" for role, token in TOKENS.items())

AllInOne = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def allinone(tmp_path: Path) -> AllInOne:
    """The all-in-one app (every service's routes) on SQLite and the in-process bus."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "bus_url": f"memory://{uuid4().hex}",
            **overrides,
        }
        async with serving(create_allinone_app(**values)) as client:
            yield client

    return start
