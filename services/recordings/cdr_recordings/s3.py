"""The cold tier: one aioboto3 S3 client for the service's lifetime.

Keys are ``<prefix>/<tenant>/<yyyy>/<mm>/<dd>/<file>`` (UTC date of the call's start), built from
sanitised segments only. Credentials come from the standard AWS environment variables or config
chain; ``RECORDINGS_S3_ENDPOINT_URL`` points at MinIO or another S3 API (path-style addressing).
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from cdr_recordings.paths import key_segment
from cdr_recordings.settings import RecordingsSettings
from cdrmodel.errors import Transient

_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


class S3Unavailable(Transient):
    code = "s3_unavailable"


def is_missing(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    return isinstance(exc, ClientError) and str(exc.response.get("Error", {}).get("Code", "")) in (
        _MISSING
    )


class S3Tier:
    def __init__(self, settings: RecordingsSettings) -> None:
        assert settings.s3_bucket is not None
        self.bucket: str = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.endpoint_url = settings.s3_endpoint_url
        self.region = settings.s3_region
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise S3Unavailable(f"the S3 client for bucket {self.bucket} is not started")
        return self._client

    async def start(self) -> None:
        import aioboto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"} if self.endpoint_url else None,
            max_pool_connections=32,
            signature_version="s3v4",  # presigned URLs with X-Amz-Expires, accepted everywhere
        )
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
            )
        )

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    def key_for(self, tenant: str | None, start_time: datetime, rel: str) -> str:
        name = key_segment(rel.rsplit("/", 1)[-1], "recording")
        key = f"{key_segment(tenant, '_unknown')}/{start_time:%Y/%m/%d}/{name}"
        return f"{self.prefix}/{key}" if self.prefix else key

    async def head(self, key: str) -> dict[str, Any] | None:
        """The object's head (``ContentLength``, ``ETag``, ``Metadata`` …) or None if missing."""
        try:
            head: dict[str, Any] = await self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_missing(exc):
                return None
            raise S3Unavailable(f"S3 head {self.bucket}/{key} failed: {exc}") from exc
        return head

    async def get_range(self, key: str, start: int, end: int) -> Any:
        """The streaming body of bytes ``start``..``end`` (inclusive); the caller closes it."""
        try:
            resp = await self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}"
            )
        except Exception as exc:
            raise S3Unavailable(f"S3 get {self.bucket}/{key} failed: {exc}") from exc
        return resp["Body"]

    async def presign(
        self, key: str, content_type: str, disposition: str | None, expires_s: int
    ) -> str:
        params = {"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type}
        if disposition:
            params["ResponseContentDisposition"] = disposition
        url: str = await self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_s
        )
        return url
