"""``cdrflow pexip pull|run``: the Pexip Infinity history puller (cdr_ingest.pexip).

Kept apart from ``cdrflow.cli`` so the command framework can change under it: ``pull_command``
and ``run_command`` take plain values and return the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from cdr_ingest.pexip.settings import PexipSettings

log = logging.getLogger("cdrflow.pexip")


def _settings() -> PexipSettings:
    from pydantic import ValidationError

    from cdr_ingest.pexip.settings import PexipSettings
    from cdrkit.settings import ConfigurationError

    try:
        return PexipSettings()
    except ValidationError as exc:  # one sentence naming the variable, never the value
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "PEXIP_*"
            field = PexipSettings.model_fields.get(name)
            alias = getattr(field, "validation_alias", None)
            choices = getattr(alias, "choices", None) or [name]
            problems.append(f"{str(choices[0]).upper()}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None


def _log_to_data_dir(directory: Path) -> None:
    """Also log to ``data_collector.log`` in the data dir, where the collector's users look
    (pull summaries, retries, warnings: INFO and up, whatever the console level)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / "data_collector.log").resolve()
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    pexip = logging.getLogger("cdr_ingest.pexip")
    if pexip.getEffectiveLevel() > logging.INFO:
        pexip.setLevel(logging.INFO)


def pull_command(since: str | None, until: str | None) -> int:
    """One window; 0 on success, 1 with one sentence on stderr on failure."""
    from cdr_ingest.pexip.client import PullFailed
    from cdr_ingest.pexip.puller import Puller
    from cdrkit.query import parse_instant
    from cdrkit.settings import ConfigurationError
    from cdrmodel.errors import InvalidInput

    try:
        settings = _settings()
        start = parse_instant(since, "--since") if since else None
        end = parse_instant(until, "--until") if until else None
        _log_to_data_dir(settings.data_dir)
        result = asyncio.run(Puller(settings).pull(start, end))
    except (PullFailed, ConfigurationError) as exc:
        print(f"cdrflow pexip pull: {exc}", file=sys.stderr)
        return 1
    except InvalidInput as exc:
        print(f"cdrflow pexip pull: {exc.detail}", file=sys.stderr)
        return 2
    print(result.summary())
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


async def run_schedule(settings: PexipSettings, stop: asyncio.Event) -> None:
    """Pull now, then at every ``PEXIP_CRON`` time (UTC) until ``stop`` is set."""
    from cronsim import CronSim

    from cdr_ingest.pexip.client import PullFailed
    from cdr_ingest.pexip.puller import Puller

    puller = Puller(settings)
    while not stop.is_set():
        try:
            await puller.pull()
        except PullFailed as exc:
            log.error("pull failed: %s (next try at the next scheduled time)", exc)
        now = datetime.now(UTC)
        due = next(CronSim(settings.cron, now.replace(tzinfo=None)))
        wait = (due.replace(tzinfo=UTC) - now).total_seconds()
        log.info("next pull at %sZ (PEXIP_CRON %r)", due.isoformat(), settings.cron)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(wait, 0.0)):
                await stop.wait()


def run_command() -> int:
    from cdrkit.settings import ConfigurationError

    try:
        settings = _settings()
        settings.require_url()
        settings.secret()
    except ConfigurationError as exc:
        print(f"cdrflow pexip run: {exc}", file=sys.stderr)
        return 1
    _log_to_data_dir(settings.data_dir)
    from cdr_ingest.pexip.settings import METRICS_PORT

    port = os.environ.get(METRICS_PORT)
    if port:
        from prometheus_client import start_http_server

        start_http_server(int(port))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_schedule(settings, stop)

    asyncio.run(main())
    return 0


@click.group(
    "pexip",
    help="Pull Pexip Infinity conference and participant history from the Management Node "
    "(PEXIP_URL, PEXIP_USERNAME, PEXIP_PASSWORD or PEXIP_PASSWORD_FILE) into CSV files in "
    "PEXIP_DATA_DIR and to ingest (PEXIP_INGEST_URL). See docs/pexip.md.",
)
def pexip() -> None:
    pass


@pexip.command("pull")
@click.option(
    "--since",
    help="end_time at or after (ISO 8601 with zone, or epoch; default: "
    "the checkpoint minus PEXIP_OVERLAP)",
)
@click.option("--until", help="end_time before (default: now)")
def pull(since: str | None, until: str | None) -> None:
    """Pull one window; exit 1 with one sentence on failure."""
    sys.exit(pull_command(since, until))


@pexip.command("run")
def run() -> None:
    """Pull now, then on the PEXIP_CRON schedule (5 fields, UTC; default */15 * * * *)."""
    sys.exit(run_command())
