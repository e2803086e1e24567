"""A fake Pexip Management Node: a real HTTPS server (self-signed CA made here) speaking the
history API's wire format: HTTP Basic, ``limit``/``offset`` paging with ``meta.next``,
``end_time__gte``/``end_time__lt`` filters (UTC, no offset), both answer shapes.

Records live in memory (12,345 participants stay cheap); faults are queued per request.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pexip"
PATH = "/api/admin/history/v1/{}/"

# Fields the 2015-2019 history API did not have yet (issue 11): dropped for "old era" records.
LATE_FIELDS = (
    "bucketed_call_quality",
    "historic_call_quality",
    "rx_bandwidth",
    "tx_bandwidth",
    "call_tag",
    "av_id",
    "presentation_id",
)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def participant_template() -> dict[str, Any]:
    obj: dict[str, Any] = fixture("pexip_history_participant_list_2020.json")["objects"][0]
    return obj


def conference_template() -> dict[str, Any]:
    obj: dict[str, Any] = fixture("pexip_history_conference_list_2020.json")["objects"][0]
    return obj


def pexip_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def make_history(
    participants: int,
    *,
    start: dt.datetime = dt.datetime(2024, 3, 1, tzinfo=dt.UTC),
    per_conference: int = 5,
    spacing_s: float = 7.0,
    old_era: bool = False,
    seed: str = "p",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(conferences, participants) built from the 2020 fixtures, one participant ending every
    ``spacing_s`` seconds; ``old_era`` drops the fields early versions lacked."""
    ptemplate, ctemplate = participant_template(), conference_template()
    # Shared, not copied per record: the fake only serialises them.
    streams = ptemplate["media_streams"]
    parts: list[dict[str, Any]] = []
    confs: list[dict[str, Any]] = []
    conf: dict[str, Any] | None = None
    for i in range(participants):
        end = start + dt.timedelta(seconds=spacing_s * (i + 1))
        if i % per_conference == 0:
            cid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}-conf-{i}"))
            conf = {
                **ctemplate,
                "id": cid,
                "name": f"vmr-{i // per_conference}",
                "participants": [],
                "resource_uri": PATH.format("conference") + cid + "/",
                "participant_count": 0,
            }
            confs.append(conf)
        assert conf is not None
        pid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}-part-{i}"))
        rec = {
            **ptemplate,
            "id": pid,
            "call_uuid": pid,
            "conversation_id": pid,
            "conference": conf["resource_uri"],
            "conference_name": conf["name"],
            "start_time": pexip_time(end - dt.timedelta(seconds=ptemplate["duration"])),
            "end_time": pexip_time(end),
            "resource_uri": PATH.format("participant") + pid + "/",
            "media_streams": streams,
        }
        if old_era:
            for name in LATE_FIELDS:
                rec.pop(name, None)
        parts.append(rec)
        conf["participants"].append(rec["resource_uri"])
        conf["participant_count"] += 1
        conf["end_time"] = pexip_time(end + dt.timedelta(seconds=1))
        conf["start_time"] = conf.get("_first") or rec["start_time"]
        conf["_first"] = conf["start_time"]
    for c in confs:
        c.pop("_first", None)
    return confs, parts


@dataclass
class Certs:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certs(directory: Path, host: str = "127.0.0.1") -> Certs:
    """A throwaway CA and a server certificate for ``host`` signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdrflow test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certs = Certs(directory / "ca.pem", directory / "node.pem", directory / "node.key")
    certs.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certs


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": "fault"}'


@dataclass
class FakeNode:
    """State shared with the handler threads (guarded by ``lock``)."""

    conferences: list[dict[str, Any]] = field(default_factory=list)
    participants: list[dict[str, Any]] = field(default_factory=list)
    username: str = "admin"
    password: str = "s3cret"
    bare: bool = False  # old versions: a bare list, no meta, no paging
    faults: list[Fault] = field(default_factory=list)  # served, in order, before real answers
    fail_after: int | None = None  # answer 500 to every request after this many good ones
    delay_s: float = 0.002
    requests: list[tuple[float, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    good: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def records(self, rtype: str) -> list[dict[str, Any]]:
        return self.conferences if rtype == "conference" else self.participants

    def paths(self, rtype: str) -> list[str]:
        return [p for _, p in self.requests if p.startswith(PATH.format(rtype))]


def _answer(node: FakeNode, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
    for rtype in ("conference", "participant"):
        if path == PATH.format(rtype):
            break
    else:
        return 404, {"error": "not found"}
    records = node.records(rtype)
    gte = query.get("end_time__gte", [None])[0]
    lt = query.get("end_time__lt", [None])[0]
    for value in (gte, lt):
        if value is not None and ("+" in value or value.endswith("Z")):
            return 400, {"error": "times are UTC without an offset"}
    # ISO strings of one format compare like times.
    chosen = [
        r
        for r in records
        if (gte is None or r["end_time"] >= gte) and (lt is None or r["end_time"] < lt)
    ]
    if node.bare:
        return 200, chosen
    limit = int(query.get("limit", ["20"])[0])
    offset = int(query.get("offset", ["0"])[0])
    page = chosen[offset : offset + limit]
    nxt = None
    if offset + limit < len(chosen):
        q = {k: v[0] for k, v in query.items()}
        q["offset"] = str(offset + limit)
        nxt = path + "?" + urlencode(q)
    return 200, {
        "meta": {
            "limit": limit,
            "next": nxt,
            "offset": offset,
            "previous": None,
            "total_count": len(chosen),
        },
        "objects": page,
    }


class _Handler(BaseHTTPRequestHandler):
    node: FakeNode

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        node = self.node
        with node.lock:
            node.requests.append((time.monotonic(), self.path))
            node.in_flight += 1
            node.max_in_flight = max(node.max_in_flight, node.in_flight)
            fault = node.faults.pop(0) if node.faults else None
        try:
            time.sleep(node.delay_s)  # lets concurrent requests overlap visibly
            expected = (
                "Basic " + base64.b64encode(f"{node.username}:{node.password}".encode()).decode()
            )
            if self.headers.get("Authorization") != expected:
                self._send(401, b'{"error": "unauthorized"}', {"WWW-Authenticate": "Basic"})
                return
            if fault is not None:
                self._send(fault.status, fault.body.encode(), fault.headers)
                return
            with node.lock:
                broken = node.fail_after is not None and node.good >= node.fail_after
                if not broken:
                    node.good += 1
            if broken:
                self._send(500, b'{"error": "node broke"}', {})
                return
            split = urlsplit(self.path)
            status, value = _answer(node, split.path, parse_qs(split.query))
            self._send(status, json.dumps(value).encode(), {})
        finally:
            with node.lock:
                node.in_flight -= 1

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class NodeServer:
    """Serves ``node`` over HTTPS on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, node: FakeNode, certs: Certs) -> None:
        handler = type("Handler", (_Handler,), {"node": node})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.cert_file, certs.key_file)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        node.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> NodeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def strip_late_fields(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for record in records:
        stripped = copy.copy(record)
        for name in LATE_FIELDS:
            stripped.pop(name, None)
        out.append(stripped)
    return out
