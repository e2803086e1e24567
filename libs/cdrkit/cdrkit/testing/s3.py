"""A real S3 API for tests: moto's ``ThreadedMotoServer`` on a free loopback port.

Fixtures (exported by ``cdrkit.testing.plugin``):

- ``moto_s3``: the server for the whole session; its ``endpoint_url`` (``http://127.0.0.1:<port>``).
- ``s3_store_url``: a fresh bucket for the test and the ``s3://`` object store URL pointing at it
  (``s3://<bucket>/objects?endpoint_url=…&region=us-east-1``). Dummy AWS credentials are set in the
  environment for the test only (``monkeypatch``), so nothing leaks into other tests.

moto keeps its state in this process, so a test that stops the server and starts a new one on the
same port (``MotoS3.restart``) finds its buckets and objects again: an S3 outage, not a data loss.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

_HOST = "127.0.0.1"
REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "cdrflow-test",
    "AWS_SECRET_ACCESS_KEY": "cdrflow-test-secret",
    "AWS_DEFAULT_REGION": REGION,
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class MotoS3:
    """One moto server; ``stop()``/``start()``/``restart()`` keep the port (and, moto being
    in-process, the data)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.endpoint_url = f"http://{_HOST}:{self.port}"
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=_HOST, port=self.port, verbose=False)
        self._server.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection((_HOST, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not listen on {self.endpoint_url}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def store_url(self, bucket: str, prefix: str = "objects") -> str:
        return f"s3://{bucket}/{prefix}?endpoint_url={self.endpoint_url}&region={REGION}"

    def client(self) -> Any:
        """A plain boto3 client on this server (explicit dummy credentials)."""
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or f"cdrflow-test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_store_url(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return moto_s3.store_url(moto_s3.create_bucket())
