"""Kafka transport security from the bus URL: TLS and SASL, as managed Kafka services and Strimzi
listeners expect them.

URL options (``kafka://host:9093?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512&...``):

- ``security_protocol``: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``;
- ``ssl_cafile``: PEM bundle of the CA(s) the brokers' certificates are checked against (default:
  the system's trust store); ``ssl_certfile`` + ``ssl_keyfile``: a client certificate for mutual
  TLS (Strimzi ``tls`` authentication); ``ssl_check_hostname`` (``true``): the broker's name must
  be in its certificate;
- ``sasl_mechanism``: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; ``sasl_username``;
  ``sasl_password_file``: a file holding the password (a mounted Secret). Otherwise the password
  comes from ``CDRFLOW_BUS_SASL_PASSWORD``.

The password never appears in the URL (a URL with ``user:password@`` is refused, without
repeating it), in settings' repr, in log lines or in error messages.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
OPTIONS = frozenset(
    {
        "security_protocol",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password_file",
    }
)


@dataclass(frozen=True)
class KafkaSecurity:
    """What the Kafka clients need; ``repr`` never shows the password."""

    protocol: str = "PLAINTEXT"
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """For log lines: protocol, mechanism and user, never the password."""
        if self.uses_sasl:
            return f"{self.protocol} {self.mechanism} as {self.username}"
        return self.protocol

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        context.check_hostname = self.check_hostname
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"bus URL option {name}={raw!r} must be true or false")


def parse_security(
    options: Mapping[str, str], password: str | None = None, *, read_files: bool = True
) -> KafkaSecurity:
    """The security settings of a bus URL's options; ``password`` is CDRFLOW_BUS_SASL_PASSWORD.

    ``read_files=False`` checks the options without touching the files (settings validation on a
    machine where the mounted files are not there)."""
    protocol = options.get("security_protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"bus URL option security_protocol={protocol!r} must be one of {', '.join(PROTOCOLS)}"
        )
    tls = protocol in ("SSL", "SASL_SSL")
    sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    cafile, certfile, keyfile = (
        options.get(k) for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    )
    if not tls and (cafile or certfile or keyfile):
        raise ValueError(
            f"bus URL: ssl_* options need security_protocol=SSL or SASL_SSL (got {protocol})"
        )
    if bool(certfile) != bool(keyfile):
        raise ValueError("bus URL: ssl_certfile and ssl_keyfile go together (mutual TLS)")
    if read_files:
        for name, path in (
            ("ssl_cafile", cafile),
            ("ssl_certfile", certfile),
            ("ssl_keyfile", keyfile),
        ):
            if path and not Path(path).is_file():
                raise ValueError(f"bus URL option {name}: no file at {path}")
    check_hostname = _flag("ssl_check_hostname", options.get("ssl_check_hostname", "true"))

    mechanism = options.get("sasl_mechanism")
    username = options.get("sasl_username")
    password_file = options.get("sasl_password_file")
    if not sasl:
        if mechanism or username or password_file:
            raise ValueError(
                "bus URL: sasl_* options need security_protocol=SASL_PLAINTEXT or SASL_SSL "
                f"(got {protocol})"
            )
        return KafkaSecurity(protocol, cafile, certfile, keyfile, check_hostname)
    mechanism = (mechanism or "").upper()
    if mechanism not in MECHANISMS:
        raise ValueError(f"bus URL option sasl_mechanism must be one of {', '.join(MECHANISMS)}")
    if not username:
        raise ValueError("bus URL: SASL needs sasl_username")
    if password_file:
        if read_files:
            try:
                password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(
                    f"bus URL option sasl_password_file: cannot read {password_file} "
                    f"({exc.strerror})"
                ) from None
        else:
            password = password or "<from file>"
    if not password:
        raise ValueError(
            "bus URL: SASL needs a password: set CDRFLOW_BUS_SASL_PASSWORD or the "
            "sasl_password_file option"
        )
    return KafkaSecurity(
        protocol, cafile, certfile, keyfile, check_hostname, mechanism, username, password
    )
