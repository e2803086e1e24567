"""The object store contract, run against both backends: a local directory and S3 (moto)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cdrkit.objects import ObjectNotFound, ObjectStore, object_key, open_object_store
from cdrkit.settings import ConfigurationError, ServiceSettings, load
from cdrkit.testing.s3 import CREDENTIALS, MotoS3
from cdrmodel.errors import InvalidInput, Transient


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return (tmp_path / "objects").as_uri()
    url: str = request.getfixturevalue("s3_store_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[ObjectStore]:
    async with open_object_store(store_url) as opened:
        yield opened


async def test_put_get_delete_round_trip(store: ObjectStore, store_url: str) -> None:
    data = os.urandom(300_000) + "é ünïcode".encode()
    key = object_key("cdr-raw", "0123abcd", datetime(2026, 11, 25, tzinfo=UTC))
    assert key == "cdr-raw/2026/11/25/0123abcd"
    uri = await store.put(key, data)
    assert uri.startswith(store_url.split("?", maxsplit=1)[0])
    assert uri.endswith("/cdr-raw/2026/11/25/0123abcd")
    assert await store.get(uri) == data
    # put overwrites: a retried put of the same key leaves the last bytes
    assert await store.put(key, b"second") == uri
    assert await store.get(uri) == b"second"
    await store.delete(uri)
    with pytest.raises(ObjectNotFound):
        await store.get(uri)
    await store.delete(uri)  # deleting twice is fine


async def test_file_put_is_on_disk_when_put_returns(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    async with open_object_store(root.as_uri()) as store:
        uri = await store.put("cdr-raw/2026/01/02/abc", b"durable")
    path = Path(urlsplit(uri).path)
    assert path == root / "cdr-raw/2026/01/02/abc"
    assert path.read_bytes() == b"durable"  # noqa: ASYNC240
    # no temporary files left beside it
    assert [p.name for p in path.parent.iterdir()] == ["abc"]


async def test_s3_put_is_visible_to_another_client(moto_s3: MotoS3, s3_store_url: str) -> None:
    async with open_object_store(s3_store_url) as store:
        uri = await store.put("cdr-raw/2026/01/02/abc", b"durable")
    bucket = urlsplit(uri).netloc
    body = moto_s3.client().get_object(Bucket=bucket, Key="objects/cdr-raw/2026/01/02/abc")["Body"]
    assert body.read() == b"durable"


@pytest.mark.parametrize(
    "key",
    [
        "../escape",
        "cdr-raw/../../etc/passwd",
        "/etc/passwd",
        "cdr-raw//x",
        "",
        "a/./b",
        "x\x00y",
        "sp ace",
        "..",
        "a/" + "b" * 300,
    ],
)
async def test_hostile_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        await store.put(key, b"x")


async def test_object_key_refuses_a_hostile_id() -> None:
    with pytest.raises(InvalidInput):
        object_key("cdr-raw", "../../../etc/passwd", datetime.now(UTC))


async def test_uris_outside_the_store_are_refused(
    store: ObjectStore, tmp_path: Path, store_url: str
) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    hostile = [
        outside.as_uri(),
        "file:///etc/passwd",
        store.url + "/../secret",
        "s3://another-bucket/objects/cdr-raw/x",
        "http://example.com/x",
    ]
    if store_url.startswith("s3://"):
        hostile.append(store.url.replace("/objects", "/elsewhere") + "/x")
    for uri in hostile:
        with pytest.raises(InvalidInput):
            await store.get(uri)
        with pytest.raises(InvalidInput):
            await store.delete(uri)
    assert outside.read_bytes() == b"secret"


def _dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_s3_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    _dummy_credentials(monkeypatch)
    port = _closed_port()
    store = open_object_store(f"s3://bucket/p?endpoint_url=http://127.0.0.1:{port}&region=x")
    with pytest.raises(Transient, match="unreachable"):
        await store.start()


async def test_missing_bucket_fails_start_unless_create_bucket(
    moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dummy_credentials(monkeypatch)
    url = moto_s3.store_url("cdrflow-not-there-" + os.urandom(4).hex())
    with pytest.raises(Transient, match="create_bucket=true"):
        await open_object_store(url).start()
    async with open_object_store(url + "&create_bucket=true") as store:
        uri = await store.put("k", b"v")
        assert await store.get(uri) == b"v"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://x/y", "must start with file:// or s3://"),
        ("file://relative/dir", "absolute path"),
        ("s3://B_ad/x", "not a valid bucket name"),
        ("s3://bucket/x?endpoint=http://h", "unknown option"),
    ],
)
def test_a_bad_store_url_fails_start_naming_the_variable(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load(ServiceSettings, object_store_url=url)
    assert "CDRFLOW_OBJECT_STORE_URL" in str(err.value)
    assert words in str(err.value)


def test_the_default_store_is_a_directory_in_the_data_dir(tmp_path: Path) -> None:
    settings = load(ServiceSettings, data_dir=tmp_path)
    assert settings.effective_object_store_url == (tmp_path / "objects").as_uri()
