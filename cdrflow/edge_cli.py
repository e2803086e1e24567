"""``cdrflow edge [status | resend-rejected]``: the serial-PBX agent and its two operator tasks.

Kept apart from the rest of the CLI, and free of the command framework, so that starting the
agent imports nothing but the agent (it runs on small boxes: start-up under a second, no server
stacks). ``cdrflow.entry`` calls ``run_task`` directly; ``cdrflow.edge_commands`` wraps the same
tasks as click commands for ``--help`` and the command list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time

from cdr_ingest.edge.settings import METRICS_PORT, BadSetting, EdgeSettings, load_settings

log = logging.getLogger("cdrflow.edge")

# SIGTERM must finish within this (docker's default grace period is 10 s).
STOP_GRACE_S = 8.0


def _configure_logging(debug: bool) -> None:
    from cdrkit.obs import configure_logging

    level = "DEBUG" if debug else os.environ.get("CDRFLOW_LOG_LEVEL", "INFO")
    configure_logging(level, os.environ.get("CDRFLOW_LOG_FORMAT", "auto"))


async def _run_agent(settings: EdgeSettings) -> None:
    from cdr_ingest.edge.agent import Agent

    if port := os.environ.get(METRICS_PORT):
        from prometheus_client import start_http_server

        from cdr_ingest.edge.metrics import REGISTRY

        start_http_server(int(port), registry=REGISTRY)
    agent = Agent(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(agent.run(stop))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    try:
        # agent.run sees the stop itself; this only bounds how long it may take.
        async with asyncio.timeout(STOP_GRACE_S):
            await task
    except TimeoutError:
        log.error("the agent did not stop within %gs; exiting (the queue is committed)", 8.0)


def _status(settings: EdgeSettings, as_json: bool) -> None:
    from cdr_ingest.edge.queue import LineQueue

    if not settings.queue_path.exists():
        sys.exit(f"no queue at {settings.queue_path} (EDGE_DATA_DIR): the agent never ran here")
    queue = LineQueue(settings.queue_path, max_lines=settings.queue_size)
    try:
        meta = queue.meta()
        rejected = queue.rejected(limit=1000)
        device_file = settings.data_dir / "device_id"
        status = {
            "device": settings.device_id
            or (device_file.read_text().strip() if device_file.exists() else None),
            "queue": str(settings.queue_path),
            "depth": queue.depth,
            "capacity": settings.queue_size,
            "oldest_age_s": round(queue.oldest_age_s(), 3),
            "last_delivered_seq": int(meta["last_delivered_seq"])
            if "last_delivered_seq" in meta
            else None,
            "last_delivered_at": float(meta["last_delivered_at"])
            if "last_delivered_at" in meta
            else None,
            "rejected_count": queue.rejected_count(),
            "rejected": [
                {
                    "seq": r.seq,
                    "error": r.error,
                    "detail": r.detail,
                    "rejected_at": r.rejected_at,
                    "line": r.line.decode("latin-1"),
                }
                for r in rejected
            ],
        }
    finally:
        queue.close()
    if as_json:
        print(json.dumps(status, indent=2))
        return
    when = status["last_delivered_at"]
    print(f"device:          {status['device']}")
    print(f"queue:           {status['queue']}")
    print(f"depth:           {status['depth']} of {status['capacity']} lines")
    print(f"oldest:          {status['oldest_age_s']:.1f} s")
    print(
        "last delivered:  "
        + (
            f"seq {status['last_delivered_seq']} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(when)))}"
            if isinstance(when, float)
            else "never"
        )
    )
    print(f"rejected:        {status['rejected_count']} lines")
    for r in rejected:
        print(f"  seq {r.seq}: {r.error}: {r.detail}\n    {r.line.decode('latin-1')!r}")


def _resend(settings: EdgeSettings) -> None:
    from cdr_ingest.edge.queue import LineQueue

    queue = LineQueue(settings.queue_path, max_lines=settings.queue_size)
    try:
        moved = queue.resend_rejected()
    finally:
        queue.close()
    print(f"{moved} rejected lines are queued again; the agent sends them with the next batch")


def _settings() -> EdgeSettings:
    try:
        return load_settings()
    except BadSetting as exc:
        sys.exit(f"invalid configuration: {exc}")


def run_task(args: list[str]) -> None:
    """``[]`` runs the agent, ``["status"]`` / ``["status", "--json"]`` / ``["resend-rejected"]``
    the operator tasks (``cdrflow.entry`` calls this for those exact command lines)."""
    settings = _settings()
    if args[:1] == ["status"]:
        _status(settings, args[1:] == ["--json"])
    elif args == ["resend-rejected"]:
        _resend(settings)
    else:
        _configure_logging(settings.debug)
        try:
            asyncio.run(_run_agent(settings))
        except BadSetting as exc:
            sys.exit(f"invalid configuration: {exc}")
