"""``PEXIP_*`` settings of the history puller, with pex_data_collector's names as fallbacks.

An existing collector ``.env`` works as it is: ``DEFAULT_MGR_ADDRESS``, ``DEFAULT_MGR_USERNAME``,
``DEFAULT_MGR_SECRET``, ``DEFAULT_CONF_LIMIT`` / ``DEFAULT_PART_LIMIT`` (page sizes) and
``DATA_CRON_TIME`` apply wherever the ``PEXIP_`` form is unset.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from cronsim import CronSim, CronSimError
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdrkit.settings import ConfigurationError

log = logging.getLogger(__name__)


# Read by `cdrflow pexip run` itself, not a setting of the puller: its own /metrics port.
METRICS_PORT = "PEXIP_METRICS_PORT"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``600``, ``600s``, ``10m``, ``1h`` or ``7d``."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit else value
    try:
        return float(number) * (unit or 1)
    except ValueError:
        raise ValueError("must be seconds or a number with s, m, h or d (e.g. 10m)") from None


class PexipSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # The Management Node: https://host[:port] (http:// only for tests, warned at start-up).
    url: str | None = Field(default=None, validation_alias=_env("PEXIP_URL", "DEFAULT_MGR_ADDRESS"))

    # The Management Node account the history is read with (HTTP Basic).
    username: str = Field(
        default="admin", validation_alias=_env("PEXIP_USERNAME", "DEFAULT_MGR_USERNAME")
    )

    # Its password; prefer PEXIP_PASSWORD_FILE (never in the environment of a deployment).
    password: SecretStr | None = Field(
        default=None, validation_alias=_env("PEXIP_PASSWORD", "DEFAULT_MGR_SECRET")
    )

    # A file holding the password (Docker / Kubernetes secrets); wins over PEXIP_PASSWORD.
    password_file: Path | None = Field(default=None, validation_alias=_env("PEXIP_PASSWORD_FILE"))

    # Check the Management Node's TLS certificate (turn off only for a lab node).
    verify_tls: bool = Field(default=True, validation_alias=_env("PEXIP_VERIFY_TLS"))

    # PEM file of the CA that signed the Management Node's certificate (default: the system's).
    ca_file: Path | None = Field(default=None, validation_alias=_env("PEXIP_CA_FILE"))

    # Records per page of the history API.
    page_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        validation_alias=_env("PEXIP_PAGE_SIZE", "DEFAULT_PART_LIMIT", "DEFAULT_CONF_LIMIT"),
    )

    # The CSV files of each pull and the checkpoint; keep it on a persistent volume.
    data_dir: Path = Field(default=Path("var/pexip"), validation_alias=_env("PEXIP_DATA_DIR"))

    # Where records go: an ingest base URL (its /v1/pexip/history route) and its bearer token.
    # Unset: the pull writes only the CSV files (and says so).
    ingest_url: str | None = Field(default=None, validation_alias=_env("PEXIP_INGEST_URL"))
    ingest_token: SecretStr | None = Field(
        default=None, validation_alias=_env("PEXIP_INGEST_TOKEN")
    )

    # The next window starts at the checkpoint minus this: 600, 600s, 10m, 1h.
    overlap_s: float = Field(default=600.0, ge=0, validation_alias=_env("PEXIP_OVERLAP"))

    # When `cdrflow pexip run` pulls (5-field cron, UTC).
    cron: str = Field(default="*/15 * * * *", validation_alias=_env("PEXIP_CRON", "DATA_CRON_TIME"))

    # One HTTP request to the Management Node or ingest: seconds, or 1m.
    timeout_s: float = Field(default=60.0, gt=0, validation_alias=_env("PEXIP_TIMEOUT"))

    # Retries per request.
    retries: int = Field(default=5, ge=0, le=50, validation_alias=_env("PEXIP_RETRIES"))

    # Longest wait between retries (a Retry-After above it is capped to it).
    retry_max_s: float = Field(default=60.0, gt=0, validation_alias=_env("PEXIP_RETRY_MAX"))
    # How long Pexip keeps history in practice (it keeps the last ~10,000 conference instances,
    # FIFO). A gap since the last good pull longer than this may have lost records for good:
    # warned (log + cdrflow_pexip_retention_gap_warnings_total).
    retention_s: float = Field(default=7 * 86400, gt=0, validation_alias=_env("PEXIP_RETENTION"))
    # Records per POST to ingest.
    ingest_batch: int = Field(
        default=500, ge=1, le=1000, validation_alias=_env("PEXIP_INGEST_BATCH")
    )

    @field_validator("overlap_s", "retention_s", "retry_max_s", "timeout_s", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if "://" not in value:
            value = "https://" + value  # the collector's DEFAULT_MGR_ADDRESS is a bare host
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// URL")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        value = " ".join(value.split())
        if len(value.split(" ")) != 5:
            raise ValueError("must be a 5-field cron expression (minute hour day month weekday)")
        try:
            from datetime import datetime

            CronSim(value, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"is not a valid cron expression: {exc}") from None
        return value

    @property
    def overlap(self) -> timedelta:
        return timedelta(seconds=self.overlap_s)

    def secret(self) -> str:
        """The Management Node password: from PEXIP_PASSWORD_FILE, else PEXIP_PASSWORD."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip("\r\n")
            except OSError as exc:
                raise ConfigurationError(
                    f"invalid configuration: PEXIP_PASSWORD_FILE: cannot read "
                    f"{self.password_file}: {exc.strerror}"
                ) from None
        if self.password is None:
            raise ConfigurationError(
                "invalid configuration: set PEXIP_PASSWORD or PEXIP_PASSWORD_FILE "
                "(or the collector's DEFAULT_MGR_SECRET)"
            )
        return self.password.get_secret_value()

    def require_url(self) -> str:
        if not self.url:
            raise ConfigurationError(
                "invalid configuration: set PEXIP_URL (or DEFAULT_MGR_ADDRESS) to the "
                "Management Node, e.g. https://pexip-mgr.example.com"
            )
        return self.url
