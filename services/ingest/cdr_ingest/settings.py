from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cdrkit.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """``INGEST_*`` settings plus the common ``CDRFLOW_*`` ones."""

    model_config = SettingsConfigDict(
        env_prefix="INGEST_", frozen=True, extra="ignore", populate_by_name=True
    )

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # How long a post waits for the bus to acknowledge before it is answered 503.
    publish_timeout_s: float = Field(default=10.0, gt=0)
    # Payloads larger than this (UTF-8 bytes) are written to the object store first and travel
    # on the bus as a claim check (payload_ref + sha256); Kafka's message limit never drops a CDR.
    inline_max_bytes: int = Field(default=256 * 1024, ge=0)
    # How long a post waits for the bus before its envelope goes to the local spool instead.
    spool_after_s: float = Field(default=2.0, gt=0)
    # Where the spool lives (default: <CDRFLOW_DATA_DIR>/spool); keep it on a persistent volume.
    spool_dir: Path | None = None
    # The spool's size limit; past it posts are answered 503 while the bus stays unavailable.
    spool_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)

    @property
    def effective_spool_dir(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"
