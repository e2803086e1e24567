from __future__ import annotations

from collections.abc import Callable

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from cdrkit.settings import ConfigurationError, ServiceSettings


class IngestSettings(ServiceSettings):
    """``INGEST_*`` settings plus the common ``CDRFLOW_*`` ones."""

    model_config = SettingsConfigDict(
        env_prefix="INGEST_", frozen=True, extra="ignore", populate_by_name=True
    )

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # How long a post waits for the bus to acknowledge before it is answered 503.
    publish_timeout_s: float = Field(default=10.0, gt=0)

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
