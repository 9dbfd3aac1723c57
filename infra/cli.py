"""`leder`: the one command for people. `leder --help` lists what it does."""

import argparse
import asyncio
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from events.topics import SERVICES


def _service_definition(name: str) -> Any:
    return importlib.import_module(f"services.{name}.app").definition


def cmd_up(_: argparse.Namespace) -> int:
    from infra.stack import up

    return up()


def cmd_demo(args: argparse.Namespace) -> int:
    from infra.demo.run import main

    return main(args)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from infra.service import build_app
    from infra.settings import Settings

    if args.service == "web":
        from services.web.app import create_app
        from services.web.settings import WebSettings

        web = WebSettings.from_env()
        app, port = create_app(web), web.http_port
    else:
        settings = Settings.from_env(args.service)
        app, port = build_app(_service_definition(args.service), settings), settings.http_port
    uvicorn.run(
        app,
        host=os.environ.get("LEDER_HTTP_HOST", "127.0.0.1"),
        port=port,
        log_level="warning",
        access_log=False,
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from infra.auth import mint_token
    from infra.stack import env_or_local, home, jwt_secret_file

    secret = os.environ.get("LEDER_JWT_SECRET")
    if not secret:
        secret_file = env_or_local("LEDER_JWT_SECRET_FILE")
        path = secret_file if secret_file else str(jwt_secret_file(home()))
        secret = Path(path).read_text().strip()
    print(mint_token(secret, args.sub, args.role, args.organisation))
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from events.jsonschema import write_schemas

    for path in write_schemas():
        print(path)
    return 0


def _offline_settings(service: str) -> Any:
    """Settings for a command that needs only the service's database (not its broker or secret)."""
    from infra.settings import Settings, database_url_for
    from infra.stack import env_or_local

    server = env_or_local("LEDER_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    own = os.environ.get(f"LEDER_{service.upper()}_DATABASE_URL") or database_url_for(
        server, f"leder_{service}"
    )
    return Settings(
        service=service, database_url=own, kafka_bootstrap="", topic_prefix="", jwt_secret="", http_port=0
    )


async def _open_store(service: str) -> Any:
    from infra.service import open_store

    return await open_store(_service_definition(service), _offline_settings(service))


def cmd_docs(_: argparse.Namespace) -> int:
    from infra.docs import write_docs

    for path in write_docs():
        print(path)
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from infra.projections import rebuild
    from infra.service import open_store

    definition = _service_definition(args.service)

    async def run() -> int:
        store = await open_store(definition, _offline_settings(args.service))
        try:
            return await rebuild(store)
        finally:
            await store.pool.close()

    count = asyncio.run(run())
    names = ", ".join(p.name for p in definition.projections()) or "none"
    print(f"{args.service}: rebuilt projections ({names}) from {count} events")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import date

    from infra.service import open_store
    from services.governance import report_service
    from services.governance.rendering import to_csv, to_html

    async def run() -> tuple[str, dict[str, Any]]:
        store = await open_store(_service_definition("governance"), _offline_settings("governance"))
        try:
            if args.kind == "kpis":
                start, end = report_service.month_bounds(args.month)
                return f"LeDeR key performance indicators, {args.month}", await report_service.kpi_report(
                    store, start, end
                )
            if args.kind == "activity":
                start, end = date.fromisoformat(args.from_), date.fromisoformat(args.to)
                return f"LeDeR activity report, {start} to {end}", await report_service.activity_report(
                    store, start, end
                )
            if args.kind == "governance":
                start, end = report_service.quarter_bounds(args.quarter)
                return f"LeDeR governance report, {args.quarter}", await report_service.governance_report(
                    store, start, end
                )
            return f"LeDeR annual report, {args.year}", await report_service.annual_report(
                store, int(args.year)
            )
        finally:
            await store.pool.close()

    title, report = asyncio.run(run())
    if args.html:
        Path(args.html).write_text(to_html(title, report))
        print(f"wrote {args.html}")
    if args.csv:
        Path(args.csv).write_text(to_csv(report))
        print(f"wrote {args.csv}")
    if not (args.html or args.csv):
        print(json.dumps(report, indent=2, default=str))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leder", description="The LeDeR case system")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "up", help="run the whole system (embedded PostgreSQL and broker by default)"
    ).set_defaults(func=cmd_up)
    demo = sub.add_parser(
        "demo",
        help="a realistic caseload through the running system over simulated months (starts it if need be)",
    )
    demo.add_argument("--notifications", type=int, default=300)
    demo.add_argument("--months", type=int, default=18)
    demo.add_argument("--seed", type=int, default=2026, help="the same seed makes the same caseload")
    demo.add_argument("--stop", action="store_true", help="stop the system afterwards if the demo started it")
    demo.set_defaults(func=cmd_demo)
    serve = sub.add_parser("serve", help="run one service, or the web application (leder up runs them all)")
    serve.add_argument("service", choices=(*SERVICES, "web"))
    serve.set_defaults(func=cmd_serve)
    token = sub.add_parser("token", help="mint a bearer token for local use")
    token.add_argument("--role", required=True)
    token.add_argument("--sub", required=True)
    token.add_argument("--organisation")
    token.set_defaults(func=cmd_token)
    sub.add_parser("schemas", help="write the JSON Schema of every event to events/schemas/").set_defaults(
        func=cmd_schemas
    )
    sub.add_parser(
        "docs", help="write the AsyncAPI and OpenAPI documents of every service to docs/"
    ).set_defaults(func=cmd_docs)
    rebuild = sub.add_parser("rebuild", help="rebuild a service's projections from its event store")
    rebuild.add_argument("service", choices=SERVICES)
    rebuild.set_defaults(func=cmd_rebuild)
    report = sub.add_parser("report", help="a governance report: kpis, activity, governance or annual")
    report.add_argument("kind", choices=["kpis", "activity", "governance", "annual"])
    report.add_argument("--month", help="YYYY-MM (kpis)")
    report.add_argument("--from", dest="from_", help="YYYY-MM-DD (activity)")
    report.add_argument("--to", help="YYYY-MM-DD (activity)")
    report.add_argument("--quarter", help="YYYY-Qn (governance)")
    report.add_argument("--year", help="YYYY (annual)")
    report.add_argument("--html", help="write a self-contained HTML page with charts here")
    report.add_argument("--csv", help="write CSV here")
    report.set_defaults(func=cmd_report)
    from services.audit.cli import add_commands

    add_commands(sub, _open_store)
    return p


def main(argv: list[str] | None = None) -> int:
    from infra.logging import configure_logging

    # Commands print their results on stdout; logs go to stderr (a service reconfigures them at start).
    configure_logging("leder", os.environ.get("LEDER_LOG_LEVEL", "WARNING"))
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
