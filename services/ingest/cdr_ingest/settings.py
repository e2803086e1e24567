from __future__ import annotations

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
    # Recently accepted (call id, sha256) pairs answered "duplicate" without a second publish;
    # best effort (per process, lost on restart), 0 turns it off. See dedupe.py.
    dedupe_window: int = Field(default=100_000, ge=0)
