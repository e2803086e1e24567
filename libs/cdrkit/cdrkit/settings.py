"""Settings shared by every service, read from the environment and validated at start-up.

Common settings use ``CDRFLOW_*`` names; a service's own settings use ``<SERVICE>_<NAME>``
(for example ``PARSER_BATCH_SIZE``). Invalid configuration fails at start-up with a sentence that
names the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdrkit.objects import parse_store_url


def _common(name: str) -> AliasChoices:
    return AliasChoices(f"CDRFLOW_{name.upper()}", name)


class ServiceSettings(BaseSettings):
    """Base class: subclasses set ``env_prefix`` (``PARSER_`` …) for their own fields."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias=_common("database_url"))
    bus_url: str = Field(default="memory://", validation_alias=_common("bus_url"))
    data_dir: Path = Field(default=Path("var"), validation_alias=_common("data_dir"))
    auto_migrate: bool = Field(default=True, validation_alias=_common("auto_migrate"))
    log_level: str = Field(default="INFO", validation_alias=_common("log_level"))
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", validation_alias=_common("log_format")
    )
    # Claim-check objects (large payloads): file:///dir or s3://bucket/prefix?endpoint_url=…
    object_store_url: str | None = Field(default=None, validation_alias=_common("object_store_url"))
    # The longest call accepted (ingest refuses a start/end pair beyond it with a 400, the parser
    # dead-letters one paired later or a document): no real call lasts a week.
    max_call_duration_s: float = Field(
        default=7 * 86400,
        gt=0,
        le=10 * 365 * 86400,
        validation_alias=_common("max_call_duration_s"),
    )
    # Browser origins allowed to call this service's API (the console's, when it is served from
    # another origin): comma-separated, e.g. https://console.example.net. Empty: none.
    cors_origins: str = Field(default="", validation_alias=_common("cors_origins"))
    # API tokens, "role:token[,role:token]" with roles read < operate < admin (cdrkit.auth);
    # unset: the APIs are open (warned at start-up).
    api_tokens: SecretStr | None = Field(default=None, validation_alias=_common("api_tokens"))

    @field_validator("api_tokens")
    @classmethod
    def _api_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        from cdrkit.auth import parse_api_tokens

        if value is None or not value.get_secret_value().strip():
            return None
        try:
            parse_api_tokens(value.get_secret_value())
        except ValueError as exc:
            # Not a ValueError: pydantic would put the input (the secrets) into the message.
            raise ConfigurationError(f"invalid configuration: CDRFLOW_API_TOKENS: {exc}") from None
        return value

    @field_validator("bus_url")
    @classmethod
    def _bus_scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "kafka://")):
            raise ValueError("must start with memory:// or kafka://")
        return value

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must start with postgresql+asyncpg:// or sqlite+aiosqlite://")
        return value

    @field_validator("object_store_url")
    @classmethod
    def _object_store(cls, value: str | None) -> str | None:
        if value:
            parse_store_url(value)
        return value

    @property
    def effective_object_store_url(self) -> str:
        """The configured URL, or an ``objects`` directory in the data dir."""
        if self.object_store_url:
            return self.object_store_url
        return (self.data_dir / "objects").resolve().as_uri()

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or a SQLite file in the data dir (the embedded default)."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cdrflow.db').resolve()}"


class ConfigurationError(SystemExit):
    """Raised at start-up with a sentence naming each invalid variable."""


S = TypeVar("S", bound="ServiceSettings")


def load(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment, turning validation errors into one clear sentence."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            common = field in ServiceSettings.model_fields
            var = f"CDRFLOW_{field.upper()}" if common else f"{prefix}{field.upper()}"
            problems.append(f"{var}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from exc
