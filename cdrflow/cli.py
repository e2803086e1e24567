"""The ``cdrflow`` command: run the platform and its operator tasks."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from cdrkit.obs import configure_logging


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError:
        sys.exit(f"invalid configuration: {name}={value!r} is not a number")


def _serve(app: object, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)  # type: ignore[arg-type]


def cmd_run(args: argparse.Namespace) -> None:
    from cdrflow.mock.feed import feed_spec
    from cdrflow.platform import create_allinone_app, embedded_overrides

    rate = args.mock_rate if args.mock_rate is not None else _env_float("CDRFLOW_MOCK_RATE", 0)
    extra = []
    if rate > 0:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        from cdr_ingest.settings import IngestSettings
        from cdrkit.settings import load

        extra.append(feed_spec(f"http://{host}:{args.port}", rate, settings=load(IngestSettings)))
    _serve(create_allinone_app(extra, **embedded_overrides()), args.host, args.port)


def cmd_serve(args: argparse.Namespace) -> None:
    from cdrflow.platform import SERVICES, create_service_app

    port = args.port or SERVICES[args.service].port
    _serve(create_service_app(args.service), args.host, port)


def cmd_migrate(_args: argparse.Namespace) -> None:
    from cdrflow.platform import SERVICES
    from cdrkit.db import create_engine, migrate
    from cdrkit.settings import ServiceSettings, load

    async def _run() -> None:
        settings = load(ServiceSettings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.effective_database_url)
        try:
            for name, svc in SERVICES.items():
                spec = svc.spec(load(svc.settings))
                if spec.migrations:
                    await migrate(engine, spec.migrations, f"alembic_version_{name}")
                    print(f"{name}: migrated")
        finally:
            await engine.dispose()

    asyncio.run(_run())


def _usage(message: str) -> None:
    print(f"cdrflow replay: {message}", file=sys.stderr)
    sys.exit(2)


def cmd_replay(args: argparse.Namespace) -> None:
    from cdrflow.replay import Progress, replay_from_store, replay_paths, write_report
    from cdrkit.query import parse_instant
    from cdrmodel.errors import InvalidInput

    if args.from_store == bool(args.paths):
        _usage("give either PATH… or --from-store --since T, not both")
    if args.concurrency < 1 or args.retries < 0:
        _usage("--concurrency must be at least 1 and --retries not negative")
    if args.token and args.user:
        _usage("give --token or --user, not both")
    if args.from_store:
        if not args.since:
            _usage("--from-store needs --since T")
        try:
            since = parse_instant(args.since, "--since")
            until = parse_instant(args.until, "--until") if args.until else None
        except InvalidInput as exc:
            _usage(exc.detail)
        summary = asyncio.run(
            replay_from_store(since, until, retries=args.retries, progress=Progress(None))
        )
        what, item = "stored payloads", "call_id"
    else:
        summary = asyncio.run(
            replay_paths(
                args.paths,
                url=args.url,
                token=args.token,
                user=args.user,
                concurrency=args.concurrency,
                retries=args.retries,
                timeout_s=args.timeout,
            )
        )
        what, item = "files", "file"
    print(summary.render(what))
    if args.report:
        write_report(args.report, summary, item)
        print(f"report: {args.report}")
    if summary.failed or summary.stopped:
        sys.exit(1)


def cmd_rerate(args: argparse.Namespace) -> None:
    import json

    from cdr_billing.rerate import rerate
    from cdr_billing.settings import BillingSettings
    from cdrkit.query import parse_instant
    from cdrkit.settings import load
    from cdrmodel.errors import InvalidInput

    try:
        since = parse_instant(args.since, "--since")
        until = parse_instant(args.until, "--until")
    except InvalidInput as exc:
        sys.exit(exc.detail)
    result = asyncio.run(rerate(load(BillingSettings), since, until))
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cdrflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="all services in one process (embedded defaults)")
    run.add_argument("--host", default=os.environ.get("CDRFLOW_HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("CDRFLOW_PORT", "8000")))
    run.add_argument(
        "--mock-rate",
        type=float,
        default=None,
        help="mock calls per minute posted to itself (CDRFLOW_MOCK_RATE)",
    )
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=["ingest", "parser", "billing", "stats", "recordings"])
    serve.add_argument("--host", default=os.environ.get("CDRFLOW_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="upgrade every service's tables to the latest schema")
    mig.set_defaults(func=cmd_migrate)

    rep = sub.add_parser(
        "replay",
        help="re-send saved [a_]<uuid>.cdr.xml/.cdr.json files, or re-publish stored payloads",
        description="Re-send the files a FreeSWITCH saved (mod_xml_cdr log-dir/err-log-dir, "
        "mod_json_cdr) to ingest, or with --from-store re-publish the raw payloads the CDR "
        "store retained to cdr.raw (CDRFLOW_DATABASE_URL, CDRFLOW_BUS_URL). Idempotent.",
    )
    rep.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or directories")
    rep.add_argument(
        "--url",
        default=os.environ.get("CDRFLOW_REPLAY_URL", "http://127.0.0.1:8000"),
        help="ingest base URL or its /v1/cdr endpoint (CDRFLOW_REPLAY_URL)",
    )
    rep.add_argument(
        "--token",
        default=os.environ.get("CDRFLOW_REPLAY_TOKEN"),
        help="bearer token (CDRFLOW_REPLAY_TOKEN)",
    )
    rep.add_argument(
        "--user",
        default=os.environ.get("CDRFLOW_REPLAY_USER"),
        help="HTTP Basic name:password, like mod_xml_cdr's cred (CDRFLOW_REPLAY_USER)",
    )
    rep.add_argument("--concurrency", type=int, default=16, help="requests in flight (16)")
    rep.add_argument("--retries", type=int, default=5, help="on 503 / connection errors (5)")
    rep.add_argument("--timeout", type=float, default=60.0, help="per request, seconds (60)")
    rep.add_argument("--report", type=Path, help="write the summary and failed items as JSON")
    rep.add_argument("--from-store", action="store_true", help="re-publish stored raw payloads")
    rep.add_argument("--since", help="with --from-store: received at or after (epoch or ISO)")
    rep.add_argument("--until", help="with --from-store: received before (epoch or ISO)")
    rep.set_defaults(func=cmd_replay)

    rer = sub.add_parser(
        "rerate", help="price the calls without a charge (existing charges never change)"
    )
    rer.add_argument("--since", required=True, help="calls started at or after (ISO 8601 or epoch)")
    rer.add_argument("--until", required=True, help="calls started before (ISO 8601 or epoch)")
    rer.set_defaults(func=cmd_rerate)

    args = parser.parse_args(argv)
    configure_logging(
        os.environ.get("CDRFLOW_LOG_LEVEL", "INFO"), os.environ.get("CDRFLOW_LOG_FORMAT", "auto")
    )
    args.func(args)


if __name__ == "__main__":
    main()
