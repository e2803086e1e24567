"""``cdrflow run`` as a newcomer starts it: one process, embedded defaults, the mock feed posting.

With ingest credentials configured the feed must authenticate like a switch would, while a post
without credentials is refused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cdrkit.testing.processes import spawn, stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_with_auth_configured_feeds_itself(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CDRFLOW_DATA_DIR": str(tmp_path),
        "CDRFLOW_MOCK_RATE": "1200",
        "INGEST_TOKENS": "feed-secret",
        "CDRFLOW_LOG_FORMAT": "json",
    }
    env.pop("CDRFLOW_DATABASE_URL", None)
    env.pop("CDRFLOW_BUS_URL", None)
    proc = spawn(
        [sys.executable, "-m", "cdrflow", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "run.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        items: list[object] = []
        while time.monotonic() < deadline and len(items) < 5:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                items = httpx.get(f"{base}/v1/cdrs", params={"limit": 50}, timeout=5).json()[
                    "items"
                ]
            time.sleep(0.3)
        assert len(items) >= 5, (tmp_path / "run.log").read_text()[-3000:]
        assert httpx.get(f"{base}/readyz", timeout=5).json() == {"status": "ready"}
        refused = httpx.post(
            f"{base}/v1/cdr", content=b"<cdr/>", headers={"content-type": "text/xml"}, timeout=5
        )
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
    finally:
        stop(proc, timeout_s=20)
    assert (tmp_path / "cdrflow.db").is_file()
    assert "mock feed post answered 401" not in (tmp_path / "run.log").read_text()
