"""The agent's settings: ``EDGE_*`` variables, with calllogger's bare names as fallbacks.

An existing calllogger environment works unchanged: ``TIMEOUT``, ``TIMEOUT_DECAY``,
``MAX_TIMEOUT``, ``QUEUE_SIZE``, ``CHECKIN_INTERVAL``, ``DEBUG``, ``PLUGIN``, ``PLUGIN_PORT``,
``PLUGIN_BAUDRATE`` and ``DATA_LOCATION`` apply when their ``EDGE_`` form is unset. Invalid values
stop the agent at start-up with a sentence naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# calllogger's names for the same settings (its plugins read PLUGIN_<SETTING>).
_BARE = {
    "EDGE_TIMEOUT": "TIMEOUT",
    "EDGE_TIMEOUT_DECAY": "TIMEOUT_DECAY",
    "EDGE_MAX_TIMEOUT": "MAX_TIMEOUT",
    "EDGE_QUEUE_SIZE": "QUEUE_SIZE",
    "EDGE_CHECKIN_INTERVAL": "CHECKIN_INTERVAL",
    "EDGE_DEBUG": "DEBUG",
    # calllogger's plugin choice, the serial plugin's settings and its data location
    "EDGE_SOURCE": "PLUGIN",
    "EDGE_SERIAL_PORT": "PLUGIN_PORT",
    "EDGE_SERIAL_BAUDRATE": "PLUGIN_BAUDRATE",
    "EDGE_DATA_DIR": "DATA_LOCATION",
}
# calllogger's plugin names for cdrflow's sources
_PLUGINS = {"siemenshipathserial": "hipath-serial", "mock": "mock", "mockcalls": "mock"}

# The variable each EdgeSettings field is read from (docs/configuration.md is generated from it;
# tests/edge/test_settings.py checks load_settings reads exactly these).
ENV = {
    "source": "EDGE_SOURCE",
    "data_dir": "EDGE_DATA_DIR",
    "ingest_url": "EDGE_INGEST_URL",
    "token": "EDGE_TOKEN",
    "device_id": "EDGE_DEVICE_ID",
    "pbx_timezone": "EDGE_PBX_TIMEZONE",
    "queue_size": "EDGE_QUEUE_SIZE",
    "batch_size": "EDGE_BATCH_SIZE",
    "timeout_s": "EDGE_TIMEOUT",
    "timeout_decay": "EDGE_TIMEOUT_DECAY",
    "max_timeout_s": "EDGE_MAX_TIMEOUT",
    "request_timeout_s": "EDGE_REQUEST_TIMEOUT",
    "checkin_interval_min": "EDGE_CHECKIN_INTERVAL",
    "debug": "EDGE_DEBUG",
    "serial_port": "EDGE_SERIAL_PORT",
    "serial_baudrate": "EDGE_SERIAL_BAUDRATE",
    "serial_bytesize": "EDGE_SERIAL_BYTESIZE",
    "serial_parity": "EDGE_SERIAL_PARITY",
    "serial_stopbits": "EDGE_SERIAL_STOPBITS",
    "serial_xonxoff": "EDGE_SERIAL_XONXOFF",
    "serial_rtscts": "EDGE_SERIAL_RTSCTS",
    "tcp_listen": "EDGE_TCP_LISTEN",
    "mock_rate": "EDGE_MOCK_RATE",
}
# Read by `cdrflow edge` itself, not a setting of the agent: its own /metrics port.
METRICS_PORT = "EDGE_METRICS_PORT"

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class BadSetting(ValueError):
    """A setting the agent cannot start with; the message names the variable."""


@dataclass(frozen=True)
class EdgeSettings:
    # hipath-serial, tcp, mock, or any source registered in the entry-point group
    # cdrflow.edge_sources.
    source: str = "hipath-serial"
    # The queue (queue.db) and the device id file; put it on a persistent volume.
    data_dir: Path = Path("./var/edge")
    # Ingest's base URL (records go to its /v1/edge/records).
    ingest_url: str = "http://127.0.0.1:8000"
    # Bearer token, one of ingest's INGEST_TOKENS.
    token: str | None = None
    # The device's name at ingest (1-64 of A-Z a-z 0-9 . _ : -); unset: derived from the MAC on
    # the first start and kept in the data dir.
    device_id: str | None = None
    # IANA name of the PBX clock (Europe/Berlin).
    pbx_timezone: str = "UTC"
    # Lines the queue holds; when full the source is not read (nothing is dropped).
    queue_size: int = 1_000_000
    # Lines per POST (at most ingest's INGEST_EDGE_MAX_RECORDS, 1,000).
    batch_size: int = 100
    # First retry delay, seconds.
    timeout_s: float = 3.0
    # Delay factor per failed attempt.
    timeout_decay: float = 1.5
    # Longest retry delay, seconds.
    max_timeout_s: float = 300.0
    # One HTTP request, seconds.
    request_timeout_s: float = 30.0
    # Minutes between check-ins, at most 30.
    checkin_interval_min: float = 5.0
    # Log every captured line.
    debug: bool = False
    # The serial device.
    serial_port: str = "/dev/ttyUSB0"
    # Serial line settings: baud rate, byte size, parity (N E O M S), stop bits (1 1.5 2).
    serial_baudrate: int = 9600
    serial_bytesize: int = 8
    serial_parity: str = "N"
    serial_stopbits: float = 1
    # Flow control: software (XON/XOFF) or hardware (RTS/CTS).
    serial_xonxoff: bool = False
    serial_rtscts: bool = False
    # host:port the tcp source listens on.
    tcp_listen: str = "0.0.0.0:9000"
    # Mock calls per minute (mock source).
    mock_rate: float = 6.0

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.db"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value in (None, "") and name in _BARE:
        value = env.get(_BARE[name])
    return None if value in (None, "") else value


def _number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadSetting(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise BadSetting(f"{name}={raw!r} is outside {lo:g}..{hi:g}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (_get(env, name) or "").lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise BadSetting(f"{name}={raw!r} is not a yes/no value (1/0, true/false)")


def _source(env: Mapping[str, str]) -> str:
    if env.get("EDGE_SOURCE"):
        return env["EDGE_SOURCE"]
    plugin = env.get("PLUGIN")
    if not plugin:
        return "hipath-serial"
    if plugin.lower() not in _PLUGINS:
        raise BadSetting(
            f"PLUGIN={plugin!r} (calllogger's plugin) has no cdrflow source; set EDGE_SOURCE "
            "to hipath-serial, tcp or mock"
        )
    return _PLUGINS[plugin.lower()]


def load_settings(env: Mapping[str, str] | None = None) -> EdgeSettings:
    """The settings from the environment; a wrong value raises ``BadSetting`` naming it."""
    env = os.environ if env is None else env
    tz = _get(env, "EDGE_PBX_TIMEZONE") or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadSetting(f"EDGE_PBX_TIMEZONE={tz!r} is not an IANA time zone name") from None
    device = _get(env, "EDGE_DEVICE_ID")
    if device is not None and not DEVICE_ID.fullmatch(device):
        raise BadSetting(
            f"EDGE_DEVICE_ID={device!r}: use 1-64 letters, digits, '.', '_', ':' or '-'"
        )
    parity = (_get(env, "EDGE_SERIAL_PARITY") or "N").upper()[:1]
    if parity not in "NEOMS":
        raise BadSetting(f"EDGE_SERIAL_PARITY={parity!r}: use N, E, O, M or S")
    stopbits = _number(env, "EDGE_SERIAL_STOPBITS", 1, 1, 2)
    if stopbits not in (1, 1.5, 2):
        raise BadSetting(f"EDGE_SERIAL_STOPBITS={stopbits:g}: use 1, 1.5 or 2")
    url = (_get(env, "EDGE_INGEST_URL") or "http://127.0.0.1:8000").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise BadSetting(f"EDGE_INGEST_URL={url!r} is not an http(s) URL")
    listen = _get(env, "EDGE_TCP_LISTEN") or "0.0.0.0:9000"
    if not re.fullmatch(r"\[?[^\s\]]*\]?:\d{1,5}", listen):
        raise BadSetting(f"EDGE_TCP_LISTEN={listen!r}: use host:port")
    return EdgeSettings(
        source=_source(env),
        data_dir=Path(_get(env, "EDGE_DATA_DIR") or "./var/edge"),
        ingest_url=url,
        token=_get(env, "EDGE_TOKEN"),
        device_id=device,
        pbx_timezone=tz,
        queue_size=int(_number(env, "EDGE_QUEUE_SIZE", 1_000_000, 1, 1e9)),
        batch_size=int(_number(env, "EDGE_BATCH_SIZE", 100, 1, 1000)),
        timeout_s=_number(env, "EDGE_TIMEOUT", 3.0, 0.001, 3600),
        timeout_decay=_number(env, "EDGE_TIMEOUT_DECAY", 1.5, 1.0, 10),
        max_timeout_s=_number(env, "EDGE_MAX_TIMEOUT", 300.0, 0.001, 86400),
        request_timeout_s=_number(env, "EDGE_REQUEST_TIMEOUT", 30.0, 0.1, 600),
        # calllogger caps its check-in interval at 30 minutes; so does cdrflow.
        checkin_interval_min=_number(env, "EDGE_CHECKIN_INTERVAL", 5.0, 0.001, 30),
        debug=_flag(env, "EDGE_DEBUG"),
        serial_port=_get(env, "EDGE_SERIAL_PORT") or "/dev/ttyUSB0",
        serial_baudrate=int(_number(env, "EDGE_SERIAL_BAUDRATE", 9600, 50, 4_000_000)),
        serial_bytesize=int(_number(env, "EDGE_SERIAL_BYTESIZE", 8, 5, 8)),
        serial_parity=parity,
        serial_stopbits=stopbits,
        serial_xonxoff=_flag(env, "EDGE_SERIAL_XONXOFF"),
        serial_rtscts=_flag(env, "EDGE_SERIAL_RTSCTS"),
        tcp_listen=listen,
        mock_rate=_number(env, "EDGE_MOCK_RATE", 6.0, 0, 1e7),
    )
