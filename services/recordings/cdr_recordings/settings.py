from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from cdrkit.settings import ServiceSettings


class RecordingsSettings(ServiceSettings):
    """``RECORDINGS_*`` settings plus the common ``CDRFLOW_*`` ones."""

    model_config = SettingsConfigDict(
        env_prefix="RECORDINGS_", frozen=True, extra="ignore", populate_by_name=True
    )

    consumer_group: str = "recordings"
