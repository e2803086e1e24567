from __future__ import annotations

import posixpath
import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from cdrkit.settings import ConfigurationError, ServiceSettings

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")

MiB = 1024 * 1024


class RecordingsSettings(ServiceSettings):
    """``RECORDINGS_*`` settings plus the common ``CDRFLOW_*`` ones."""

    model_config = SettingsConfigDict(
        env_prefix="RECORDINGS_", frozen=True, extra="ignore", populate_by_name=True
    )

    # Kafka consumer group on cdr.normalized, and the most messages handled as one batch.
    consumer_group: str = "recordings"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # Where the switch's recordings are mounted here (unset: <CDRFLOW_DATA_DIR>/recordings), and
    # the switch's own recording directory, which a CDR's path starts with and which is mapped
    # onto the local root. A relative path in a CDR is taken relative to the local root.
    local_root: Path | None = None
    switch_root: str = "/var/lib/freeswitch/recordings"
    # Younger calls are served from the local root, older ones from S3 (the archiver moves them).
    local_days: float = Field(default=5, gt=0)
    # The cold tier: off while no bucket is set (the embedded default).
    s3_bucket: str | None = None
    s3_prefix: str = "recordings"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Serve S3 audio by a 302 to a presigned URL (valid s3_presign_expires_s) instead of
    # streaming it through this service.
    s3_redirect: bool = False
    s3_presign_expires_s: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    # Archiver: period, files uploaded at once, rows taken per run, multipart threshold and
    # part size, attempts before a file is left alone (its last error stays in the index).
    archive_interval_s: float = Field(default=3600, gt=0)
    archive_concurrency: int = Field(default=4, ge=1, le=64)
    archive_batch: int = Field(default=200, ge=1, le=10_000)
    archive_part_bytes: int = Field(default=8 * MiB, ge=5 * MiB, le=5 * 1024 * MiB)
    archive_max_attempts: int = Field(default=5, ge=1)
    keep_local: bool = False
    # Replaced by CDRFLOW_API_TOKENS (cdrkit.auth); kept only to refuse a stale setting loudly
    # instead of serving recordings to anyone while the operator believes they are protected.
    legacy_tokens: SecretStr | None = Field(default=None, validation_alias="RECORDINGS_TOKENS")

    @field_validator("s3_bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not _BUCKET.match(value):
            raise ValueError("not a valid S3 bucket name")
        return value or None

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value and not all(_PREFIX_SEGMENT.match(p) for p in value.split("/")):
            raise ValueError("use segments of letters, digits, '.', '_', '-' separated by '/'")
        return value

    @field_validator("switch_root")
    @classmethod
    def _switch_root(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return posixpath.normpath(value)

    @field_validator("legacy_tokens")
    @classmethod
    def _tokens(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            raise ConfigurationError(
                "invalid configuration: RECORDINGS_TOKENS is no longer read; give the same tokens "
                "as read:<token> entries of CDRFLOW_API_TOKENS"
            )
        return None

    @property
    def effective_local_root(self) -> Path:
        return (self.local_root or self.data_dir / "recordings").resolve()

    @property
    def s3_enabled(self) -> bool:
        return self.s3_bucket is not None
