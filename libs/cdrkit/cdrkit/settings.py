"""Settings shared by every service, read from the environment and validated at start-up.

Common settings use ``CDRFLOW_*`` names; a service's own settings use ``<SERVICE>_<NAME>``
(for example ``PARSER_BATCH_SIZE``). Invalid configuration fails at start-up with a sentence that
names the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdrkit.bus.base import BusConfig
from cdrkit.bus.security import parse_security
from cdrkit.objects import parse_store_url


def _common(name: str) -> AliasChoices:
    return AliasChoices(f"CDRFLOW_{name.upper()}", name)


class ServiceSettings(BaseSettings):
    """Base class: subclasses set ``env_prefix`` (``PARSER_`` …) for their own fields."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # postgresql+asyncpg://user:pass@host/db (deployed) or sqlite+aiosqlite:///file; unset: a
    # SQLite file in the data dir (the embedded default).
    database_url: str | None = Field(default=None, validation_alias=_common("database_url"))
    # memory:// (one process) or kafka://host:9092[,host:9092]?options (see "Kafka over TLS and
    # SASL" below and cdrkit/bus/base.py for partitions, compression, timeouts).
    bus_url: str = Field(default="memory://", validation_alias=_common("bus_url"))
    # The SASL password of a kafka:// bus URL with SASL (unless its sasl_password_file is set).
    bus_sasl_password: SecretStr | None = Field(
        default=None, validation_alias=_common("bus_sasl_password")
    )
    # Local state: ingest's spool, file claim checks, the SQLite file, the recordings root.
    data_dir: Path = Field(default=Path("var"), validation_alias=_common("data_dir"))
    # Run the service's Alembic migrations at start; false where a one-shot `cdrflow migrate`
    # owns the schema (compose, Kubernetes), so replicas never race through one upgrade.
    auto_migrate: bool = Field(default=True, validation_alias=_common("auto_migrate"))
    # Log level, and the format: json lines, text, or auto (json when not on a terminal).
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
    # Fault injection for crash tests only, never set in production: a consume loop whose
    # <dir>/<group>.arm file holds N pauses after the batch that reaches N messages is stored,
    # before its offset commit, until the file is removed (cdrkit/bus/runner.py).
    fault_hold_dir: Path | None = Field(default=None, validation_alias=_common("fault_hold_dir"))

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
        config = BusConfig.parse(value)
        if config.scheme == "kafka":
            # The options' form; the files and the password are checked when the bus is built.
            parse_security(config.options, "unchecked", read_files=False)
        return value

    @property
    def bus_password(self) -> str | None:
        """CDRFLOW_BUS_SASL_PASSWORD, for ``open_bus(url, sasl_password=...)``."""
        secret = self.bus_sasl_password
        return secret.get_secret_value() if secret is not None else None

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


def _redacted(value: object) -> object:
    """A URL's password replaced by ``***``: start-up errors are logged."""
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password is not None:
            host = parts.netloc.rsplit("@", 1)[-1]
            return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return value


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
            problems.append(f"{var}: {err['msg']} (got {_redacted(err.get('input'))!r})")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from exc
