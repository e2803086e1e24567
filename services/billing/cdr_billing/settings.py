from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from cdrkit.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    """``BILLING_*`` settings plus the common ``CDRFLOW_*`` ones."""

    model_config = SettingsConfigDict(
        env_prefix="BILLING_", frozen=True, extra="ignore", populate_by_name=True
    )

    # Kafka consumer group on cdr.normalized, and the most messages handled as one batch.
    consumer_group: str = "billing"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # The wall clock of the default tariff's time bands, of tariffs created without a timezone,
    # and of bills (which month a call ended in, the start date/time printed per call).
    timezone: str = "UTC"
    # The tariff of subscribers without an assignment (created at start if missing, as the
    # telephone-bill tariff of ARCHITECTURE §6, when this is "default").
    default_tariff: str = Field(default="default", min_length=1, max_length=64)
    # The largest amount (either sign) one adjustment may carry, in the charge's currency.
    max_adjustment: Decimal = Field(default=Decimal(10000), gt=0, lt=Decimal(10) ** 12)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("must be an IANA timezone name like UTC or America/Sao_Paulo") from exc
        return value
