"""The ``cdrflow`` command: run the platform and its operator tasks."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

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
    from cdrflow.feed import feed_spec
    from cdrflow.platform import create_allinone_app

    rate = args.mock_rate if args.mock_rate is not None else _env_float("CDRFLOW_MOCK_RATE", 0)
    extra = []
    if rate > 0:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        extra.append(feed_spec(f"http://{host}:{args.port}", rate))
    _serve(create_allinone_app(extra), args.host, args.port)


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
