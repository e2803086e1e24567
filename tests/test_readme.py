"""The README's quick start works verbatim: ``cdrflow run`` (what ``make run`` starts) on a free
port with a fresh data dir, then every command of the README's quick-start block run by bash from a
directory holding the repository's ``examples/``, each answer checked against the ``# →`` lines
under it."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cdrkit.testing.processes import spawn, stop

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def quick_start_steps(text: str) -> list[Step]:
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no shell block in the README's quick start"
    steps: list[Step] = []
    pending: list[str] = []
    for line in block.group(1).splitlines():
        if pending:
            pending.append(line)
        elif line.startswith("# →"):
            steps[-1].expected.append(line.removeprefix("# →").strip())
            continue
        elif not line.strip() or line.startswith("#"):
            continue
        else:
            pending = [line]
        joined = "\n".join(pending)
        if joined.count("'") % 2 == 0 and not line.endswith("\\"):
            steps.append(Step(joined))
            pending = []
    assert not pending, f"unfinished command in the README: {pending}"
    return steps


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; detail belongs in docs/"
    steps = quick_start_steps(README.read_text())
    assert len(steps) >= 10
    assert all(step.expected for step in steps), [s.command for s in steps if not s.expected]


def test_make_run_starts_cdrflow_run() -> None:
    done = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "cdrflow run --host 127.0.0.1 --port 8000" in done.stdout


def test_quick_start_commands_answer_as_the_readme_says(tmp_path: Path) -> None:
    steps = quick_start_steps(README.read_text())
    port = _free_port()
    env = {**os.environ, "CDRFLOW_DATA_DIR": str(tmp_path / "var"), "CDRFLOW_MOCK_RATE": "0"}
    env["CDRFLOW_MOCK_EDGE"] = "0"
    for name in ("CDRFLOW_DATABASE_URL", "CDRFLOW_BUS_URL", "INGEST_TOKENS", "INGEST_BASIC_AUTH"):
        env.pop(name, None)
    env.pop("CDRFLOW_API_TOKENS", None)
    log = tmp_path / "run.log"
    work = tmp_path / "clone"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    proc = spawn(
        [sys.executable, "-m", "cdrflow", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "cdrflow run never became ready"
            time.sleep(0.2)
        for step in steps:
            command = step.command.replace("localhost:8000", f"127.0.0.1:{port}")
            deadline = time.monotonic() + 30  # stored/priced asynchronously: retry until then
            while True:
                done = subprocess.run(
                    ["bash", "-c", command],
                    cwd=work,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                missing = [e for e in step.expected if e not in done.stdout]
                if done.returncode == 0 and not missing:
                    break
                assert time.monotonic() < deadline, (
                    f"README command {step.command!r} answered {done.stdout[:2000]!r} "
                    f"(exit {done.returncode}, {done.stderr[:500]!r}); expected {missing}"
                )
                time.sleep(0.3)
    finally:
        stop(proc, timeout_s=20)


def test_the_picture_draws_only_what_exists(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cdrflow.cli import cli
    from cdrflow.platform import SERVICES
    from cdrmodel import topics
    from tests.docs.test_architecture_endpoints import served

    text = README.read_text()
    picture = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert picture, "no mermaid picture in the README"
    drawn = picture.group(1)
    for topic in re.findall(r"\bcdr\.[a-z]+\b", drawn):
        assert topic in topics.ALL, f"the picture draws a topic that does not exist: {topic}"
    routes = served(tmp_path)
    for method, path in re.findall(r"\b(GET|POST|PUT|DELETE) (/[\w/.{}-]+)", drawn):
        assert (method, path) in routes, f"the picture draws an endpoint no service serves: {path}"
    for command in re.findall(r"cdrflow ([a-z]+(?: [a-z]+)?)", drawn):
        words = command.split()
        result = CliRunner().invoke(cli, [*words, "--help"])
        assert result.exit_code == 0, f"the picture names a command that does not exist: {command}"
    for name, service in SERVICES.items():
        assert re.search(rf"\b{name}\b", drawn), f"service {name} is missing from the picture"
        assert f"| {name} | {service.port} |" in text, f"service {name} missing from the table"
