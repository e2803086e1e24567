"""The object store behind claim checks: a local directory (``file://``) or S3 (``s3://``).

One small interface, two backends (``open_object_store(url)``):

- ``file:///abs/dir`` — objects are files under the directory. ``put`` writes a temporary file,
  fsyncs it, renames it into place and fsyncs the directory, so a claim check is durable before
  the envelope that points at it is published.
- ``s3://bucket[/prefix]?endpoint_url=http://host:9000&region=eu-west-1&create_bucket=true`` —
  objects are S3 objects (aioboto3); credentials come from the standard AWS environment variables
  (or the usual AWS config chain). ``create_bucket=true`` creates a missing bucket at start;
  otherwise a missing bucket fails the start with a clear sentence. A ``PUT`` acknowledged by S3 is
  durable.

Keys are relative paths of safe segments (``[A-Za-z0-9._-]``, no ``..``); ``object_key`` builds
them from ingest's own envelope id and a date, never from anything a switch sent. ``get`` and
``delete`` take the URI ``put`` returned and refuse a URI outside the store (a hostile
``payload_ref`` must not read arbitrary files or buckets).

Errors: a missing object is ``ObjectNotFound`` (an ``InvalidInput``: retrying will not bring it
back); an unreachable store is ``Transient``; a URI outside the store is ``InvalidInput``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

from cdrkit.files import fsync_dir
from cdrmodel.errors import InvalidInput, NotFound, Transient

_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
_S3_OPTIONS = {"endpoint_url", "region", "create_bucket"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ObjectNotFound(NotFound):
    code = "object_not_found"


def object_key(namespace: str, object_id: str, when: datetime) -> str:
    """``<namespace>/YYYY/MM/DD/<object_id>``, checked to be a safe key."""
    return check_key(f"{namespace}/{when:%Y/%m/%d}/{object_id}")


def check_key(key: str) -> str:
    """The key itself if every segment is safe; ``InvalidInput`` otherwise."""
    parts = key.split("/")
    if not key or len(key) > 900 or not all(_SEGMENT.match(p) and p != ".." for p in parts):
        raise InvalidInput(
            f"object key {key[:100]!r} is not safe: use segments of letters, digits, '.', '_', "
            "'-' separated by '/', none empty, none '..'"
        )
    return key


def parse_store_url(url: str) -> tuple[str, str, str, dict[str, str]]:
    """Split and check a store URL: ``(scheme, location, prefix, options)``.

    ``file``: location is the absolute directory, prefix empty. ``s3``: location is the bucket.
    Raises ``ValueError`` with a sentence (the settings turn it into a start-up error).
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError("a file:// object store URL needs an absolute path (file:///dir)")
        if parts.query:
            raise ValueError("a file:// object store URL takes no options")
        return "file", unquote(parts.path).rstrip("/") or "/", "", {}
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc):
            raise ValueError(f"s3:// object store URL: {parts.netloc!r} is not a valid bucket name")
        prefix = parts.path.strip("/")
        if prefix:
            check_key(prefix)
        raw = parse_qs(parts.query, keep_blank_values=True)
        unknown = set(raw) - _S3_OPTIONS
        if unknown:
            raise ValueError(
                f"s3:// object store URL: unknown option(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_S3_OPTIONS))})"
            )
        options = {k: v[-1] for k, v in raw.items()}
        if options.get("create_bucket", "false").lower() not in ("true", "false", "1", "0"):
            raise ValueError("s3:// object store URL: create_bucket must be true or false")
        return "s3", parts.netloc, prefix, options
    raise ValueError("an object store URL must start with file:// or s3://")


class ObjectStore(ABC):
    """Put bytes under a safe key, get them back by the URI ``put`` returned, delete them."""

    url: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections, check the store is usable."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abstractmethod
    async def put(self, key: str, data: bytes) -> str:
        """Store ``data`` durably under ``key``; return its URI. Overwrites an existing object."""

    @abstractmethod
    async def get(self, uri: str) -> bytes:
        """The object's bytes; ``ObjectNotFound`` if it is gone, ``Transient`` if unreachable."""

    @abstractmethod
    async def delete(self, uri: str) -> None:
        """Remove the object; deleting a missing object is not an error."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def open_object_store(url: str) -> ObjectStore:
    """The store for ``url`` (not started: call ``start()`` or use ``async with``)."""
    scheme, location, prefix, options = parse_store_url(url)
    if scheme == "file":
        return FileObjectStore(Path(location))
    return S3ObjectStore(
        location,
        prefix,
        endpoint_url=options.get("endpoint_url") or None,
        region=options.get("region") or None,
        create_bucket=options.get("create_bucket", "false").lower() in ("true", "1"),
    )


class FileObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise Transient(f"object store directory {self.root} is not usable: {exc}") from exc

    def path_of(self, uri: str) -> Path:
        """The file behind ``uri``; ``InvalidInput`` when it is not inside this store."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"{uri[:200]!r} is not an object of the store {self.url}")
        path = Path(unquote(parts.path))
        rel = os.path.relpath(os.path.normpath(path), self.root)
        if rel.startswith("..") or os.path.isabs(rel):
            raise InvalidInput(f"{uri[:200]!r} is outside the object store {self.url}")
        return self.root / check_key(rel.replace(os.sep, "/"))

    async def put(self, key: str, data: bytes) -> str:
        path = self.root / check_key(key)
        try:
            await asyncio.to_thread(self._write, path, data)
        except OSError as exc:
            raise Transient(f"could not write to the object store {self.url}: {exc}") from exc
        return path.as_uri()

    def _write(self, path: Path, data: bytes) -> None:
        created = _make_dirs(path.parent, self.root)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        # The rename and any new directories are durable only once their directories are synced.
        for directory in [path.parent, *(d.parent for d in created)]:
            fsync_dir(directory)

    async def get(self, uri: str) -> bytes:
        path = self.path_of(uri)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"object {uri} does not exist (deleted or never written)") from exc
        except OSError as exc:
            raise Transient(f"could not read {uri}: {exc}") from exc

    async def delete(self, uri: str) -> None:
        path = self.path_of(uri)
        try:
            await asyncio.to_thread(path.unlink, True)
        except OSError as exc:
            raise Transient(f"could not delete {uri}: {exc}") from exc


def _make_dirs(directory: Path, root: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (deepest last)."""
    missing: list[Path] = []
    d = directory
    while d != root and not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
    return list(reversed(missing))


# botocore error codes that mean "this object is not there" rather than "the store is broken".
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3ObjectStore(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        create_bucket: bool = False,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self.create_bucket = create_bucket
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        import aioboto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        config = Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
            # MinIO, moto and most self-hosted S3 APIs want path-style addressing.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
            )
        )
        try:
            await self._ensure_bucket()
        except BaseException:
            await self.close()
            raise

    async def _ensure_bucket(self) -> None:
        try:
            await self._call(self._client.head_bucket(Bucket=self.bucket), "check bucket")
            return
        except ObjectNotFound:
            if not self.create_bucket:
                raise Transient(
                    f"bucket {self.bucket!r} does not exist; create it, or add "
                    "create_bucket=true to CDRFLOW_OBJECT_STORE_URL"
                ) from None
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region and self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        await self._call(self._client.create_bucket(**kwargs), "create bucket")

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    def key_of(self, uri: str) -> str:
        """The S3 key behind ``uri``; ``InvalidInput`` when it is not inside this store."""
        parts = urlsplit(uri)
        key = unquote(parts.path).lstrip("/")
        inside = parts.scheme == "s3" and parts.netloc == self.bucket and not parts.query
        if not inside or (self.prefix and not key.startswith(self.prefix + "/")):
            raise InvalidInput(f"{uri[:200]!r} is outside the object store {self.url}")
        return check_key(key)

    async def put(self, key: str, data: bytes) -> str:
        full = f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)
        await self._call(
            self._require().put_object(Bucket=self.bucket, Key=full, Body=data), f"put {full}"
        )
        return f"s3://{self.bucket}/{quote(full)}"

    async def get(self, uri: str) -> bytes:
        key = self.key_of(uri)

        async def fetch() -> bytes:
            resp = await self._require().get_object(Bucket=self.bucket, Key=key)
            async with resp["Body"] as body:
                data: bytes = await body.read()
            return data

        data: bytes = await self._call(fetch(), f"get {uri}")
        return data

    async def delete(self, uri: str) -> None:
        key = self.key_of(uri)
        await self._call(
            self._require().delete_object(Bucket=self.bucket, Key=key), f"delete {uri}"
        )

    def _require(self) -> Any:
        if self._client is None:
            raise Transient(f"object store {self.url} is not started")
        return self._client

    async def _call(self, coro: Any, what: str) -> Any:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            return await coro
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise ObjectNotFound(f"{what}: no such object in {self.url}") from exc
            raise Transient(f"object store {self.url}: {what} failed: {code or exc}") from exc
        except (InvalidInput, Transient):
            raise
        except Exception as exc:
            # Connection refused, timeouts, DNS: the store is unreachable, try again later.
            raise Transient(
                f"object store {self.url} unreachable: {what}: {type(exc).__name__}: {exc}"
            ) from exc
