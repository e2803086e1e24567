"""The recordings service on a memory bus, SQLite (or PostgreSQL) in a tmp dir, real files under
a tmp local root and a moto S3 bucket."""

from __future__ import annotations

import os
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cdr_recordings.app import RecordingsComponent, create_app
from cdr_recordings.settings import RecordingsSettings
from cdrkit.settings import load
from cdrkit.testing.s3 import CREDENTIALS, REGION, MotoS3
from cdrmodel import CDR, topics
from tests.e2e.conftest import serving, wait_for

SWITCH_ROOT = "/var/lib/freeswitch/recordings"


def young(hours: float = 1) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def old(days: float = 30) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def new_call_id() -> str:
    return str(uuidlib.uuid4())


@dataclass
class Rec:
    """One running recordings service and what it sees."""

    app: FastAPI
    client: httpx.AsyncClient
    root: Path
    bucket: str
    moto: MotoS3

    @property
    def component(self) -> RecordingsComponent:
        comp: RecordingsComponent = self.app.state.cdrflow.components["recordings"]
        return comp

    def s3(self) -> Any:
        """A plain boto3 client of its own (not the service's)."""
        return self.moto.client()

    def write(self, rel: str, data: bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def switch_path(self, rel: str) -> str:
        return f"{SWITCH_ROOT}/{rel}"

    def key(self, tenant: str, start: datetime, name: str) -> str:
        assert self.component.service.s3 is not None
        return self.component.service.s3.key_for(tenant, start, name)

    def put_s3(self, key: str, data: bytes) -> None:
        self.s3().put_object(Bucket=self.bucket, Key=key, Body=data)

    async def publish(self, *cdrs: CDR | bytes) -> None:
        bus = self.app.state.cdrflow.runtime.bus
        for cdr in cdrs:
            value = cdr if isinstance(cdr, bytes) else cdr.to_json()
            key = None if isinstance(cdr, bytes) else cdr.call_id.encode()
            await bus.producer.send(topics.NORMALIZED, value, key=key)

    async def index(self, *cdrs: CDR) -> None:
        """Publish CDRs on cdr.normalized and wait until the consumer indexed them."""
        await self.publish(*cdrs)
        repo = self.component.service.repo

        async def indexed() -> bool:
            return all([await repo.get(c.call_id) is not None for c in cdrs])

        await wait_for(indexed, timeout=10, what="the recordings to be indexed")

    async def row(self, call_id: str) -> Any:
        return await self.component.service.repo.get(call_id)


def cdr(
    call_id: str | None = None,
    *,
    start: datetime | None = None,
    recording_path: str | None = None,
    tenant: str | None = "acme.example.com",
) -> CDR:
    start = start or young()
    return CDR(
        call_id=call_id or new_call_id(),
        source="freeswitch",
        tenant=tenant,
        start_time=start,
        end_time=start + timedelta(seconds=60),
        recording_path=recording_path,
    )


RecFactory = Callable[..., AbstractAsyncContextManager[Rec]]


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials for the test and a fresh bucket."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return moto_s3.create_bucket()


@pytest.fixture
def recordings(tmp_path: Path, moto_s3: MotoS3, s3_env: str) -> RecFactory:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Rec]:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "bus_url": f"memory://{uuidlib.uuid4().hex}",
            "local_root": root,
            "s3_bucket": s3_env,
            "s3_endpoint_url": moto_s3.endpoint_url,
            "s3_region": REGION,
            # The archiver's own timer never fires during a test: tests call run_once.
            "archive_interval_s": 3600,
            **overrides,
        }
        settings = load(RecordingsSettings, **values)
        app = create_app(settings)
        async with serving(app) as client:
            yield Rec(app, client, root, s3_env, moto_s3)

    return start


@pytest.fixture
async def rec(recordings: RecFactory) -> AsyncIterator[Rec]:
    async with recordings() as running:
        yield running


def audio_bytes(size: int) -> bytes:
    return os.urandom(size)
