from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdr_ingest.pexip.settings import PexipSettings
from tests.pexip.fakenode import Certs, FakeNode, NodeServer, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pexip-tls"))


@pytest.fixture
def node(certs: Certs) -> Iterator[FakeNode]:
    fake = FakeNode()
    with NodeServer(fake, certs):
        yield fake


def settings_for(
    node: FakeNode, certs: Certs, data_dir: Path, **overrides: object
) -> PexipSettings:
    values: dict[str, object] = {
        "url": node.url,
        "username": node.username,
        "password": node.password,
        "ca_file": certs.ca_file,
        "data_dir": data_dir,
        "page_size": 100,
        "retries": 3,
        "retry_max_s": 2,
        **overrides,
    }
    return PexipSettings(**values)  # type: ignore[arg-type]
