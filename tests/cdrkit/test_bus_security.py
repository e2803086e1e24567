"""Kafka over TLS and SASL (cdrkit.bus.security) against a real broker.

Tansu 0.6.0 cannot terminate TLS itself (its ``--cert`` and ``--key`` flags refuse to be used
together), so the TLS tests put a TLS terminator in front of it, the way a TLS-terminating proxy
or a service mesh does: the client does a real handshake (server verified against the test CA,
client certificate required), Tansu advertises the terminator's port so every connection the
client opens goes through it. SASL: Tansu's ``--authentication`` requires SCRAM of every client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cdrkit.bus import BusError, open_bus
from cdrkit.bus.security import parse_security
from cdrkit.settings import ConfigurationError, ServiceSettings, load
from cdrkit.testing.tansu import TansuBroker, _free_port

PASSWORD = "pa55-w0rd-never-logged"


# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (_name(cn), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None
) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    server: Path
    client: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    ca = _cert("cdrflow test CA", ca_key, None, ca=True)
    issuer = (ca.subject, ca_key)
    _write(d / "ca.pem", ca)
    _write(d / "other-ca.pem", _cert("someone else's CA", other_key, None, ca=True))
    _write(d / "server.pem", _cert("127.0.0.1", server_key, issuer, ip="127.0.0.1"), server_key)
    _write(d / "client.pem", _cert("cdrflow-parser", client_key, issuer), client_key)
    return Pki(d / "ca.pem", d / "other-ca.pem", d / "server.pem", d / "client.pem")


# --------------------------------------------------------------------------- TLS terminator


@dataclass
class Terminator:
    port: int
    handshakes: int = 0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def tls_tansu(pki: Pki) -> AsyncIterator[tuple[TansuBroker, Terminator]]:
    """Tansu behind a TLS terminator that requires a client certificate signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.server, pki.server.with_suffix(".key"))
    context.verify_mode = ssl.CERT_REQUIRED
    terminator = Terminator(_free_port())
    broker = TansuBroker(advertised_port=terminator.port)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        terminator.handshakes += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", broker.port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", terminator.port, ssl=context)
    await asyncio.to_thread(broker.start)
    try:
        yield broker, terminator
    finally:
        server.close()
        await asyncio.to_thread(broker.cleanup)


def _tls_url(port: int, pki: Pki, **extra: str) -> str:
    options = {
        "idempotence": "false",
        "security_protocol": "SSL",
        "ssl_cafile": str(pki.ca),
        "ssl_certfile": str(pki.client),
        "ssl_keyfile": str(pki.client.with_suffix(".key")),
        "request_timeout_ms": "5000",
        "ping_timeout_ms": "3000",
        **extra,
    }
    return f"kafka://127.0.0.1:{port}?" + "&".join(f"{k}={v}" for k, v in options.items() if v)


async def test_mutual_tls_round_trip(tls_tansu: tuple[TansuBroker, Terminator], pki: Pki) -> None:
    _broker, terminator = tls_tansu
    bus = open_bus(_tls_url(terminator.port, pki))
    topic, group = f"tls-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await bus.start()
    try:
        await bus.ensure_topics([topic])
        await bus.producer.send(topic, b"over tls", key=b"k")
        consumer = await bus.consumer([topic], group)
        got: list[bytes] = []
        for _ in range(50):
            got += [m.value for m in await consumer.getmany(timeout_s=0.2, max_records=10)]
            if got:
                break
        await consumer.close()
    finally:
        await bus.close()
    assert got == [b"over tls"]
    assert terminator.handshakes >= 2  # producer, consumer, admin: every one through TLS


@pytest.mark.parametrize(
    ("what", "extra"),
    [
        ("a CA that did not sign the broker's certificate", {"ssl_cafile": "OTHER"}),
        ("no client certificate", {"ssl_certfile": "", "ssl_keyfile": ""}),
    ],
)
async def test_tls_refusals_are_bus_errors(
    tls_tansu: tuple[TansuBroker, Terminator], pki: Pki, what: str, extra: dict[str, str]
) -> None:
    _broker, terminator = tls_tansu
    extra = {k: (str(pki.other_ca) if v == "OTHER" else v) for k, v in extra.items()}
    bus = open_bus(_tls_url(terminator.port, pki, **extra))
    await bus.start()
    try:
        with pytest.raises(BusError):
            await bus.ping()
    finally:
        await bus.close()


@pytest.fixture
def sasl_tansu() -> Iterator[TansuBroker]:
    broker = TansuBroker(authentication=True)
    broker.start()
    yield broker
    broker.cleanup()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_scram_is_negotiated_and_the_password_never_logged(
    sasl_tansu: TansuBroker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mechanism: str,
) -> None:
    # The password comes from a file (a mounted Secret). Tansu knows no user yet (its users are
    # created through an authenticated connection), so the SCRAM exchange is refused: the bus
    # reports a BusError, and neither it nor any log line carries the password.
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    url = (
        f"kafka://{sasl_tansu.bootstrap_servers}?idempotence=false&security_protocol=SASL_PLAINTEXT"
        f"&sasl_mechanism={mechanism}&sasl_username=cdrflow-parser&sasl_password_file={secret}"
        "&ping_timeout_ms=3000&request_timeout_ms=3000"
    )
    caplog.set_level(logging.DEBUG)
    # configure_logging() (run by earlier tests' apps) sets aiokafka to WARNING: lower it here too,
    # or the SCRAM exchange (and any password in it) would never reach the captured log.
    caplog.set_level(logging.DEBUG, logger="aiokafka")
    bus = open_bus(url)
    await bus.start()
    try:
        with pytest.raises(BusError) as refused:
            await bus.ping()
    finally:
        await bus.close()
    assert PASSWORD not in str(refused.value)
    assert PASSWORD not in caplog.text
    assert "SASL credentials" in str(refused.value)
    # The SCRAM exchange reached the broker (it answered the client's proof).
    assert "n=cdrflow-parser" in caplog.text


# --------------------------------------------------------------------------- options


def test_security_options_and_password_sources(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    sec = parse_security(
        {
            "security_protocol": "sasl_ssl",
            "sasl_mechanism": "scram-sha-512",
            "sasl_username": "u",
            "sasl_password_file": str(secret),
        }
    )
    assert (sec.protocol, sec.mechanism, sec.password) == ("SASL_SSL", "SCRAM-SHA-512", "from-file")
    assert "from-file" not in repr(sec)
    kwargs = sec.client_kwargs()
    assert kwargs["sasl_plain_password"] == "from-file"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    env = parse_security(
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
        "from-env",
    )
    assert env.password == "from-env"
    assert "ssl_context" not in env.client_kwargs()
    assert parse_security({}).client_kwargs() == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"ssl_cafile": "/x"}, "need security_protocol=SSL"),
        ({"security_protocol": "SSL", "ssl_certfile": "/x"}, "go together"),
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "no file"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u"},
            "sasl_mechanism",
        ),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "sasl_username"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            "CDRFLOW_BUS_SASL_PASSWORD",
        ),
        ({"sasl_username": "u"}, "need security_protocol=SASL"),
    ],
)
def test_bad_security_options_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_security(options)


def test_settings_take_the_password_from_the_variable_and_never_show_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CDRFLOW_BUS_URL",
        "kafka://k:9093?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-256&sasl_username=u",
    )
    monkeypatch.setenv("CDRFLOW_BUS_SASL_PASSWORD", PASSWORD)
    settings = load(ServiceSettings)
    assert settings.bus_password == PASSWORD
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.model_dump())
    # A password in the URL is refused without repeating it.
    monkeypatch.setenv("CDRFLOW_BUS_URL", f"kafka://u:{PASSWORD}@k:9093")
    with pytest.raises(ConfigurationError) as refused:
        load(ServiceSettings)
    assert "credentials" in str(refused.value)
    assert PASSWORD not in str(refused.value)
