from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from cdrkit.settings import ConfigurationError, ServiceSettings


class IngestSettings(ServiceSettings):
    """``INGEST_*`` settings plus the common ``CDRFLOW_*`` ones."""

    model_config = SettingsConfigDict(
        env_prefix="INGEST_", frozen=True, extra="ignore", populate_by_name=True
    )

    # The largest CDR post accepted (bytes); a larger one is answered 413.
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
    # Recently accepted (call id, sha256) pairs answered "duplicate" without a second publish;
    # best effort (per process, lost on restart), 0 turns it off. See dedupe.py.
    dedupe_window: int = Field(default=100_000, ge=0)

    # The most call start/end records one POST /v1/events may carry (a longer list is a 413).
    events_max_records: int = Field(default=1000, ge=1, le=100_000)
    # Lines in one POST /v1/edge/records (the agent's EDGE_BATCH_SIZE must not exceed it).
    edge_max_records: int = Field(default=1000, ge=1, le=100_000)

    @property
    def effective_spool_dir(self) -> Path:
        return self.spool_dir or self.data_dir / "spool"

    # HTTP Basic credentials (mod_xml_cdr/mod_json_cdr ``cred``), "user:pass[,user2:pass2]", and
    # bearer tokens, "tok1[,tok2]". Neither set: open access (warned at start-up).
    basic_auth: SecretStr | None = None
    tokens: SecretStr | None = None

    @field_validator("basic_auth")
    @classmethod
    def _basic_auth_form(cls, value: SecretStr | None) -> SecretStr | None:
        from cdr_ingest.auth import parse_basic_auth

        if value is not None and value.get_secret_value().strip():
            _check_secret("INGEST_BASIC_AUTH", parse_basic_auth, value)
            return value
        return None

    @field_validator("tokens")
    @classmethod
    def _tokens_form(cls, value: SecretStr | None) -> SecretStr | None:
        from cdr_ingest.auth import parse_tokens

        if value is not None and value.get_secret_value().strip():
            _check_secret("INGEST_TOKENS", parse_tokens, value)
            return value
        return None


def _check_secret(variable: str, parse: Callable[[str], object], value: SecretStr) -> None:
    # Not a ValueError: pydantic would put the input (the secret) into the error, and the error
    # into the start-up message. This stops start-up with a sentence that names no secret.
    try:
        parse(value.get_secret_value())
    except ValueError as exc:
        raise ConfigurationError(f"invalid configuration: {variable}: {exc}") from None
