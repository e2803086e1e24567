"""Ingest's envelope ids (cdr_ingest.service.new_id) are what ``uuid.uuid4().hex`` made of the
same random bytes."""

from __future__ import annotations

import os
import random
import uuid

import pytest

from cdr_ingest import service


def test_new_id_is_uuid4_hex_of_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(15)
    samples = [bytes(16), b"\xff" * 16] + [rng.randbytes(16) for _ in range(20_000)]
    for raw in samples:
        monkeypatch.setattr(service.os, "urandom", lambda n, raw=raw: raw[:n])
        assert service.new_id() == uuid.UUID(bytes=raw, version=4).hex
    monkeypatch.undo()
    fresh = service.new_id()
    assert uuid.UUID(fresh).version == 4
    assert uuid.UUID(fresh).hex == fresh
    assert fresh != service.new_id()
    assert service.os.urandom is os.urandom
