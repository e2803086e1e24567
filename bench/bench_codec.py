"""What each bus compression costs per message: aiokafka's own codecs (compress on produce,
decompress on consume) on real raw envelopes (the FreeSWITCH XML fixtures as ingest wraps them).

``python -m bench codec``. The limit printed beside each codec is copying the bytes (``none``).
The broker's share is measured by ``E2E_BUS_OPTIONS=compression=<codec> python -m bench e2e``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import codec

from bench.common import save
from cdrmodel import Origin, PayloadKind, RawEnvelope, sha256_hex

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "freeswitch").glob("freeswitch_xml_cdr_*.xml"))

CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "none": (bytes, bytes),
    "lz4": (codec.lz4_encode, codec.lz4_decode),
    "zstd": (codec.zstd_encode, codec.zstd_decode),
    "snappy": (codec.snappy_encode, codec.snappy_decode),
    "gzip": (codec.gzip_encode, codec.gzip_decode),
}


def envelopes() -> list[bytes]:
    out = []
    for path in FIXTURES:
        text = path.read_text()
        out.append(
            RawEnvelope(
                id="0" * 32,
                kind=PayloadKind.FREESWITCH_XML,
                received_at=datetime.now(UTC),
                source=Origin(remote_addr="127.0.0.1"),
                content_type="application/xml",
                call_id="c" * 36,
                payload=text,
                sha256=sha256_hex(text),
            ).to_json()
        )
    return out


def _per_call_us(fn: Callable[[bytes], bytes], data: list[bytes], seconds: float = 0.5) -> float:
    n = 0
    start = time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        for d in data:
            fn(d)
        n += len(data)
    return elapsed / n * 1e6


def main() -> None:
    data = envelopes()
    size = sum(map(len, data)) / len(data)
    print(f"codec: {len(data)} raw envelopes, {size:,.0f} bytes on average (CPU time per message)")
    results: dict[str, dict[str, float]] = {}
    for name, (enc, dec) in CODECS.items():
        packed = [enc(d) for d in data]
        ratio = sum(map(len, packed)) / sum(map(len, data))
        enc_us = _per_call_us(enc, data)
        dec_us = _per_call_us(dec, packed)
        results[name] = {"compress_us": enc_us, "decompress_us": dec_us, "size_ratio": ratio}
        print(
            f"  {name:6} compress {enc_us:6.1f} µs  decompress {dec_us:6.1f} µs  "
            f"size {ratio:5.0%} of the envelope"
        )
    save("codec", results)


if __name__ == "__main__":
    main()
