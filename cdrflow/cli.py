"""The ``cdrflow`` command: run the platform and its operator tasks.

Built on click (already in the runtime set through uvicorn). Every option shows its default and the
environment variable it falls back to; every command that touches a database, a bus or an ingest
URL says which one in its ``--help`` (resolved from the environment at that moment) and again on
stderr when it starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from cdrkit.obs import configure_logging

CONTEXT: dict[str, Any] = {
    "show_default": True,
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}
SERVICE_NAMES = ("ingest", "parser", "billing", "stats", "recordings")
_USERINFO_PASSWORD = re.compile(r"^([a-z0-9+.-]+://[^:/@?#]*):[^@/?#]*@", re.IGNORECASE)
_SECRET_PARAM = re.compile(
    r"([?&][^=&#]*(?:password|secret|token|key)[^=&#]*=)[^&#]*", re.IGNORECASE
)


def shown(url: str) -> str:
    """``url`` safe to print: no password in its user info or secret-looking query parameters."""
    url = _USERINFO_PASSWORD.sub(r"\1:***@", url, count=1)
    return _SECRET_PARAM.sub(r"\1***", url)


def _fail(command: str, message: str, code: int = 2) -> NoReturn:
    click.echo(f"cdrflow {command}: {message}", err=True)
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# What a command touches


def _targets(touches: Sequence[str], *, embedded: bool = False) -> list[tuple[str, str]]:
    """(what, where) for each of ``touches``, resolved from the environment now."""
    from cdrkit.settings import ConfigurationError, ServiceSettings, load

    try:
        common = load(ServiceSettings)
    except ConfigurationError as exc:
        return [("configuration", str(exc))]
    bus = common.bus_url
    if embedded:
        from cdrflow.platform import embedded_overrides

        bus = str(embedded_overrides().get("bus_url", bus))
    rows: list[tuple[str, str]] = []
    for what in touches:
        if what == "database":
            where = shown(common.effective_database_url)
            how = "CDRFLOW_DATABASE_URL" if common.database_url else "SQLite in CDRFLOW_DATA_DIR"
            rows.append(("database", f"{where}  ({how})"))
        elif what == "bus":
            how = "in this process" if bus.startswith("memory://") else "CDRFLOW_BUS_URL"
            rows.append(("bus", f"{shown(bus)}  ({how})"))
        elif what == "data dir":
            rows.append(("data dir", f"{common.data_dir.resolve()}  (CDRFLOW_DATA_DIR)"))
    return rows


class Touching(click.Command):
    """A command whose help ends with the database/bus it will touch, resolved at help time."""

    def __init__(self, *args: Any, touches: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.touches = tuple(touches)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.touches:
            embedded = self.name == "run"
            with formatter.section("Touches (from the environment now)"):
                formatter.write_dl(_targets(self.touches, embedded=embedded))


def _announce(command: str, rows: list[tuple[str, str]]) -> None:
    for what, where in rows:
        click.echo(f"cdrflow {command}: {what} {where}", err=True)


def _freeze_startup_objects() -> None:
    """Take what exists once the all-in-one app is built (modules, apps, schemas: ~130,000
    objects, none of them garbage) out of the cyclic collector's reach (``gc.freeze``). Its full
    passes stop the one event loop every service shares; walking those objects each time made
    a pass ~120 ms in ``bench e2e allinone``, ~15-40 ms without them (docs/performance.md,
    fifth round, h5allinone)."""
    import gc

    gc.collect()
    gc.freeze()


def _serve(app: object, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The commands


@click.group(
    context_settings=CONTEXT,
    help="cdrflow: run the call detail record platform (all in one, or one service) and its "
    "operator tasks. COMMAND --help shows each option's default and what the command touches.",
)
def cli() -> None:
    configure_logging(
        os.environ.get("CDRFLOW_LOG_LEVEL", "INFO"), os.environ.get("CDRFLOW_LOG_FORMAT", "auto")
    )


HOST = click.option(
    "--host", default="127.0.0.1", envvar="CDRFLOW_HOST", show_envvar=True, help="listen address"
)


@cli.command(cls=Touching, touches=("database", "bus", "data dir"))
@HOST
@click.option(
    "--port", type=int, default=8000, envvar="CDRFLOW_PORT", show_envvar=True, help="HTTP port"
)
@click.option(
    "--mock-rate",
    type=click.FloatRange(min=0),
    default=0.0,
    envvar="CDRFLOW_MOCK_RATE",
    show_envvar=True,
    help="mock calls per minute posted to itself (0: no mock feed)",
)
@click.option(
    "--mock-edge",
    type=click.FloatRange(min=0),
    default=0.0,
    envvar="CDRFLOW_MOCK_EDGE",
    show_envvar=True,
    help="mock HiPath calls per minute through an in-process edge agent (0: none; docs/edge.md)",
)
def run(host: str, port: int, mock_rate: float, mock_edge: float) -> None:
    """All services in one process on the embedded defaults (SQLite file, in-process bus with its
    log in the data dir, local recordings), optionally fed mock calls."""
    from cdrflow.mock.feed import feed_spec
    from cdrflow.platform import create_allinone_app, embedded_overrides

    extra = []
    if mock_rate > 0:
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        from cdr_ingest.settings import IngestSettings
        from cdr_recordings.settings import RecordingsSettings
        from cdrkit.settings import load

        extra.append(
            feed_spec(
                f"http://{local}:{port}",
                mock_rate,
                settings=load(IngestSettings),
                recordings=load(RecordingsSettings),
            )
        )
    if mock_edge > 0:
        from cdr_ingest.settings import IngestSettings
        from cdrflow.mock.feed import mock_edge_spec
        from cdrkit.settings import load

        ingest = load(IngestSettings)
        local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        extra.append(
            mock_edge_spec(f"http://{local}:{port}", mock_edge, ingest.data_dir, settings=ingest)
        )
    _announce("run", [("listening on", f"http://{host}:{port}")])
    _announce("run", _targets(("database", "bus", "data dir"), embedded=True))
    if mock_rate > 0:
        _announce("run", [("mock feed", f"{mock_rate:g} calls/min")])
    if mock_edge > 0:
        _announce("run", [("mock HiPath edge", f"{mock_edge:g} calls/min")])
    app = create_allinone_app(extra, **embedded_overrides())
    _freeze_startup_objects()
    _serve(app, host, port)


@cli.command(cls=Touching, touches=("database", "bus"))
@click.argument("service", type=click.Choice(SERVICE_NAMES))
@HOST
@click.option(
    "--port", type=int, default=None, help="HTTP port [default: the service's own, 8001-8005]"
)
def serve(service: str, host: str, port: int | None) -> None:
    """Run one service (the deployment form: each service its own process)."""
    from cdrflow.platform import SERVICES, create_service_app

    port = port or SERVICES[service].port
    _announce(f"serve {service}", [("listening on", f"http://{host}:{port}")])
    _announce(f"serve {service}", _targets(("database", "bus")))
    _serve(create_service_app(service), host, port)


@cli.command(cls=Touching, touches=("database",))
def migrate() -> None:
    """Upgrade every service's tables to the latest schema."""
    from cdrflow.platform import SERVICES
    from cdrkit.db import create_engine
    from cdrkit.db import migrate as upgrade
    from cdrkit.settings import ServiceSettings, load

    _announce("migrate", _targets(("database",)))

    async def _run() -> None:
        settings = load(ServiceSettings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.effective_database_url)
        try:
            for name, svc in SERVICES.items():
                spec = svc.spec(load(svc.settings))
                if spec.migrations:
                    await upgrade(engine, spec.migrations, f"alembic_version_{name}")
                    click.echo(f"{name}: migrated")
        finally:
            await engine.dispose()

    asyncio.run(_run())


@cli.command(
    cls=Touching,
    touches=("database", "bus"),
    epilog="PATH mode touches only the ingest URL; --from-store reads the database and "
    "publishes to the bus below.",
)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[PATH]...")
@click.option(
    "--url",
    default="http://127.0.0.1:8000",
    envvar="CDRFLOW_REPLAY_URL",
    show_envvar=True,
    help="ingest base URL or its /v1/cdr endpoint",
)
@click.option("--token", envvar="CDRFLOW_REPLAY_TOKEN", show_envvar=True, help="bearer token")
@click.option(
    "--user",
    envvar="CDRFLOW_REPLAY_USER",
    show_envvar=True,
    help="HTTP Basic name:password, like mod_xml_cdr's cred",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=16, help="requests in flight")
@click.option("--retries", type=click.IntRange(min=0), default=5, help="on 503 / connection errors")
@click.option("--timeout", type=float, default=60.0, help="per request, seconds")
@click.option(
    "--report", type=click.Path(path_type=Path), help="write the summary and failed items as JSON"
)
@click.option("--from-store", is_flag=True, help="re-publish stored raw payloads to cdr.raw")
@click.option("--since", help="with --from-store: received at or after (epoch or ISO)")
@click.option("--until", help="with --from-store: received before (epoch or ISO)")
def replay(
    paths: tuple[Path, ...],
    url: str,
    token: str | None,
    user: str | None,
    concurrency: int,
    retries: int,
    timeout: float,
    report: Path | None,
    from_store: bool,
    since: str | None,
    until: str | None,
) -> None:
    """Re-send saved [a_]<uuid>.cdr.xml/.cdr.json files (mod_xml_cdr log-dir/err-log-dir,
    mod_json_cdr) to ingest, or with --from-store re-publish the raw payloads the CDR store
    retained. Idempotent: the parser stores each call once."""
    from cdrflow.replay import Progress, replay_from_store, replay_paths, write_report
    from cdrkit.query import parse_instant
    from cdrmodel.errors import InvalidInput

    if from_store == bool(paths):
        _fail("replay", "give either PATH… or --from-store --since T, not both")
    if token and user:
        _fail("replay", "give --token or --user, not both")
    if from_store:
        if not since:
            _fail("replay", "--from-store needs --since T")
        try:
            start = parse_instant(since, "--since")
            end = parse_instant(until, "--until") if until else None
        except InvalidInput as exc:
            _fail("replay", exc.detail)
        _announce("replay", _targets(("database", "bus")))
        summary = asyncio.run(
            replay_from_store(start, end, retries=retries, progress=Progress(None))
        )
        what, item = "stored payloads", "call_id"
    else:
        _announce("replay", [("ingest", shown(url))])
        summary = asyncio.run(
            replay_paths(
                list(paths),
                url=url,
                token=token,
                user=user,
                concurrency=concurrency,
                retries=retries,
                timeout_s=timeout,
            )
        )
        what, item = "files", "file"
    click.echo(summary.render(what))
    if report:
        write_report(report, summary, item)
        click.echo(f"report: {report}")
    if summary.failed or summary.stopped:
        sys.exit(1)


@cli.command(cls=Touching, touches=("database", "bus"))
@click.option("--since", required=True, help="calls started at or after (ISO 8601 or epoch)")
@click.option("--until", required=True, help="calls started before (ISO 8601 or epoch)")
def rerate(since: str, until: str) -> None:
    """Price the calls without a charge with today's tariffs and publish their cdr.rated
    (existing charges never change)."""
    from cdr_billing.rerate import rerate as rerate_calls
    from cdr_billing.settings import BillingSettings
    from cdrkit.query import parse_instant
    from cdrkit.settings import load
    from cdrmodel.errors import InvalidInput

    try:
        start = parse_instant(since, "--since")
        end = parse_instant(until, "--until")
    except InvalidInput as exc:
        _fail("rerate", exc.detail)
    _announce("rerate", _targets(("database", "bus")))
    result = asyncio.run(rerate_calls(load(BillingSettings), start, end))
    click.echo(json.dumps(result))


def _add_pexip() -> None:
    from cdrflow.pexip_cli import pexip

    cli.add_command(pexip)


_add_pexip()


def _add_edge() -> None:
    from cdrflow.edge_commands import edge

    cli.add_command(edge)


_add_edge()


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="cdrflow")


if __name__ == "__main__":
    main()
