"""The agent's pure parts: framing, settings (with calllogger's names), identity, mock lines."""

from __future__ import annotations

import contextlib
import random
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cdr_ingest.edge.capture import MAX_LINE, LineSplitter
from cdr_ingest.edge.identity import device_id, primary_mac
from cdr_ingest.edge.settings import ENV, BadSetting, EdgeSettings, load_settings
from cdr_ingest.edge.sources import mock_call, source_class
from cdr_parser.hipath import RingNotice, map_line
from cdrmodel.edge import SerialLine


def test_framing_bytes_go_lines_split_on_cr_or_lf_and_blank_lines_are_skipped() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"\x10\x02\x10\x03\x13\x11first li") == []
    assert splitter.feed(b"ne\r\n\r\n   \r\nsec\x00ond\rthird\n\xff\xfegarbage") == [
        b"first line",
        b"second",
        b"third",
    ]
    assert splitter.flush() == [b"\xff\xfegarbage"]  # garbage is kept: the parser judges it
    assert splitter.flush() == []


def test_a_line_without_an_end_is_cut_not_grown_forever() -> None:
    splitter = LineSplitter()
    lines = splitter.feed(b"x" * (MAX_LINE * 2 + 10))
    assert lines == [b"x" * MAX_LINE, b"x" * MAX_LINE]
    assert splitter.flush() == [b"x" * 10]


# A value other than the default for every setting, as the variable's text and as read.
OTHER = {
    "source": ("tcp", "tcp"),
    "data_dir": ("/srv/edge", Path("/srv/edge")),
    "ingest_url": ("https://cdr.example.net/", "https://cdr.example.net"),
    "token": ("t0k", "t0k"),
    "device_id": ("pbx-1", "pbx-1"),
    "pbx_timezone": ("Europe/Berlin", "Europe/Berlin"),
    "queue_size": ("500", 500),
    "batch_size": ("7", 7),
    "timeout_s": ("2.5", 2.5),
    "timeout_decay": ("2", 2.0),
    "max_timeout_s": ("90", 90.0),
    "request_timeout_s": ("12", 12.0),
    "checkin_interval_min": ("30", 30.0),
    "debug": ("yes", True),
    "serial_port": ("/dev/ttyS3", "/dev/ttyS3"),
    "serial_baudrate": ("19200", 19200),
    "serial_bytesize": ("7", 7),
    "serial_parity": ("e", "E"),
    "serial_stopbits": ("2", 2.0),
    "serial_xonxoff": ("1", True),
    "serial_rtscts": ("true", True),
    "tcp_listen": ("127.0.0.1:9100", "127.0.0.1:9100"),
    "mock_rate": ("60", 60.0),
}


def test_every_setting_is_read_from_the_variable_the_docs_name() -> None:
    # docs/configuration.md lists EDGE_* from ENV: each must really reach its field, and
    # unset, the loader must give the dataclass defaults the page shows.
    assert load_settings({}) == EdgeSettings()
    assert set(OTHER) == set(ENV) == {f for f in EdgeSettings.__dataclass_fields__}
    for field, (text, value) in OTHER.items():
        assert getattr(load_settings({ENV[field]: text}), field) == value, ENV[field]


def test_calllogger_names_apply_when_the_edge_form_is_unset() -> None:
    settings = load_settings(
        {
            "TIMEOUT": "5",
            "TIMEOUT_DECAY": "2",
            "MAX_TIMEOUT": "60",
            "QUEUE_SIZE": "1000",
            "CHECKIN_INTERVAL": "10",
            "DEBUG": "1",
            "EDGE_MAX_TIMEOUT": "120",  # the EDGE_ form wins
        }
    )
    assert (settings.timeout_s, settings.timeout_decay, settings.max_timeout_s) == (5, 2, 120)
    assert (settings.queue_size, settings.checkin_interval_min, settings.debug) == (1000, 10, True)
    plugin = load_settings(
        {
            "PLUGIN": "SiemensHipathSerial",
            "PLUGIN_PORT": "/dev/ttyS1",
            "PLUGIN_BAUDRATE": "4800",
            "DATA_LOCATION": "/data",
        }
    )
    assert (plugin.source, plugin.serial_port, plugin.serial_baudrate) == (
        "hipath-serial",
        "/dev/ttyS1",
        4800,
    )
    assert str(plugin.data_dir) == "/data"
    assert load_settings({"PLUGIN": "Mock"}).source == "mock"
    defaults = load_settings({})
    assert (defaults.serial_port, defaults.serial_baudrate, defaults.batch_size) == (
        "/dev/ttyUSB0",
        9600,
        100,
    )
    assert (defaults.timeout_s, defaults.timeout_decay, defaults.max_timeout_s) == (3, 1.5, 300)
    assert (defaults.queue_size, defaults.checkin_interval_min) == (1_000_000, 5)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHECKIN_INTERVAL": "31"}, "EDGE_CHECKIN_INTERVAL"),  # calllogger's maximum is 30
        ({"EDGE_PBX_TIMEZONE": "CEST"}, "EDGE_PBX_TIMEZONE"),
        ({"EDGE_SERIAL_PARITY": "X"}, "EDGE_SERIAL_PARITY"),
        ({"EDGE_SERIAL_BAUDRATE": "fast"}, "EDGE_SERIAL_BAUDRATE"),
        ({"EDGE_DEVICE_ID": "a b"}, "EDGE_DEVICE_ID"),
        ({"EDGE_INGEST_URL": "ftp://x"}, "EDGE_INGEST_URL"),
        ({"EDGE_SERIAL_RTSCTS": "maybe"}, "EDGE_SERIAL_RTSCTS"),
        ({"EDGE_SOURCE": "modem"}, "EDGE_SOURCE"),
        ({"PLUGIN": "Beronet"}, "PLUGIN"),
    ],
)
def test_a_wrong_setting_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(BadSetting, match=named):
        source_class(load_settings(env).source)


def test_the_device_id_is_written_once_and_kept(tmp_path: Path) -> None:
    first = device_id(tmp_path, None)
    assert first.startswith("edge-")
    mac = primary_mac()
    if mac is not None:
        assert first == "edge-" + mac.replace(":", "")
    (tmp_path / "device_id").write_text("edge-moved-host\n")  # e.g. restored on another box
    assert device_id(tmp_path, None) == "edge-moved-host"
    assert device_id(tmp_path, "configured") == "configured"


def test_the_sources_are_entry_points() -> None:
    assert {source_class(n).name for n in ("hipath-serial", "tcp", "mock")} == {
        "hipath-serial",
        "tcp",
        "mock",
    }


def test_mock_lines_are_valid_hipath_records() -> None:
    rng = random.Random(3)
    now = datetime(2025, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    kinds = {"ring": 0, "cdr": 0}
    for n in range(200):
        for seq, line in enumerate(mock_call(rng, now)):
            try:
                cdr = map_line(
                    SerialLine("mock", n * 10 + seq + 1, "Europe/Berlin", "mock", 0, line)
                )
            except RingNotice:
                kinds["ring"] += 1
                continue
            kinds["cdr"] += 1
            assert cdr.end_time == now
    assert kinds["cdr"] == 200
    assert kinds["ring"] > 50


def test_the_line_call_id_is_the_uuid5_of_device_and_seq() -> None:
    import uuid

    from cdrmodel.edge import EDGE_NAMESPACE, edge_call_id

    for device, seq in [("a", 1), ("edge-0242ac120002", 123_456_789), ("x:y.z", 2**63 - 1)]:
        assert edge_call_id(device, seq) == str(uuid.uuid5(EDGE_NAMESPACE, f"{device}/{seq}"))


async def test_the_agent_http_client_reads_chunked_answers_and_reconnects() -> None:
    import asyncio

    from cdr_ingest.edge.http import HttpClient, HttpError

    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        requests.append(head + await reader.readexactly(length))
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b'7\r\n{"ok": \r\n5\r\ntrue}\r\n0\r\n\r\n'
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}/base")
    try:
        for n in range(2):  # the server closes after each answer: the client reconnects
            answer = await client.post_json("/v1/x", {"n": n}, headers={"X-Test": "1"})
            assert (answer.status_code, answer.json()) == (200, {"ok": True})
        assert requests[0].startswith(b"POST /base/v1/x HTTP/1.1\r\n")
        assert b"X-Test: 1\r\n" in requests[0]
        assert requests[1].endswith(b'{"n":1}')
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    with pytest.raises(HttpError):
        await HttpClient(f"http://127.0.0.1:{port}").post_json("/v1/x", {}, timeout=5)


async def test_a_cancel_reaching_the_agent_http_client_is_never_lost() -> None:
    """Stopping the agent cancels its delivery task, usually inside ``post_json``. The cancel is
    tried at every step of an exchange (after 0, 1, 2 … turns of the event loop, until the
    exchange finishes first): whenever it reached the request it must end it, never hand back
    the answer (Python 3.11's ``asyncio.wait_for`` did, when the answer completed at that very
    turn, and the delivery loop went on posting while the agent's stop waited for it)."""
    import asyncio

    from cdr_ingest.edge.http import HttpClient

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lost: list[int] = []
    cancelled = 0
    try:
        for turns in range(1000):
            client = HttpClient(f"http://127.0.0.1:{port}")
            request = asyncio.create_task(client.post_json("/v1/edge/records", {"n": turns}))
            for _ in range(turns):
                await asyncio.sleep(0)
            reached = request.cancel()
            try:
                await request
            except asyncio.CancelledError:
                cancelled += 1
            else:
                if reached:
                    lost.append(turns)
            await client.aclose()
            if not reached:
                break  # the whole exchange fits in fewer turns: every step was tried
        else:
            raise AssertionError("the exchange never finished before the cancel")
    finally:
        server.close()
    assert lost == [], f"cancel lost (the answer returned) after {lost} turns"
    assert cancelled == turns  # each earlier step was a cancel that reached the request


def test_a_hand_built_line_envelope_is_what_the_model_would_write() -> None:
    from datetime import UTC, datetime

    from cdr_ingest.edge_service import line_envelope
    from cdrmodel import Origin, PayloadKind, RawEnvelope, sha256_hex

    line = SerialLine("pbx-9", 42, "Europe/Berlin", "tcp", 1.5e9, b'\x80 line\t"quoted"')
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    origin = Origin(remote_addr="10.0.0.9", node="pbx-9")
    built = line_envelope(line, "2026-01-02T03:04:05.678901Z", origin.model_dump(exclude_none=True))
    model = RawEnvelope(
        id=line.call_id.replace("-", ""),
        kind=PayloadKind.PBX_SERIAL,
        received_at=now,
        source=origin,
        content_type="application/json",
        call_id=line.call_id,
        payload=line.to_json(),
        sha256=sha256_hex(line.to_json()),
    )
    assert RawEnvelope.from_json(built) == model
    assert built == model.to_json()  # byte for byte: the same envelope whichever way it is built
    assert SerialLine.from_json(RawEnvelope.from_json(built).payload or "") == line
