"""`leder`: the one command for people. `leder --help` lists what it does."""

import argparse
import asyncio
import json
import os
import re
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from events.topics import SERVICES

# The years a report may cover: LeDeR began in 2017 (the governance API's annual report says the same).
REPORT_YEARS = range(2017, 2101)
# Who a person may be in a token: every role but `system`, the services' own (reconcile, relays).
PERSON_ROLES = {
    "partner_system": "a partner organisation's system that notifies deaths",
    "lac": "the local area contact, who allocates and oversees reviews",
    "reviewer": "a reviewer",
    "senior_reviewer": "a senior reviewer, who supports reviewers",
    "qa_panel": "a member of the quality assurance panel",
    "governance": "a member of the ICB's governance group",
    "ig_officer": "an information governance officer (the audit log)",
}


class Parser(argparse.ArgumentParser):
    """Bad input is one line saying what is wrong, and exit 2: never a usage block or a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class Failure(Exception):
    """Something the command could not do (no database to reach, a file it cannot write): one line, 1."""


class BadInput(Exception):
    """Input that parses but cannot be right (a period that ends before it starts): one line, 2."""


def _year_ok(year: int, what: str) -> None:
    if year not in REPORT_YEARS:
        raise argparse.ArgumentTypeError(
            f"{what}: LeDeR reports cover {REPORT_YEARS.start} to {REPORT_YEARS.stop - 1}"
        )


def month(text: str) -> str:
    """YYYY-MM, e.g. 2026-10."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a month: give YYYY-MM, e.g. 2026-10")
    _year_ok(int(text[:4]), text)
    return text


def quarter(text: str) -> str:
    """YYYY-Qn, n from 1 to 4, e.g. 2026-Q3."""
    if not re.fullmatch(r"\d{4}-[Qq][1-4]", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a quarter: give YYYY-Qn, n 1 to 4, e.g. 2026-Q3")
    _year_ok(int(text[:4]), text)
    return text.upper()


def year(text: str) -> int:
    """YYYY, e.g. 2026."""
    if not re.fullmatch(r"\d{4}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a year: give four digits, e.g. 2026")
    _year_ok(int(text), text)
    return int(text)


def instances(text: str) -> int:
    """How many processes of each service: a whole number from 1."""
    if not re.fullmatch(r"[1-9][0-9]{0,2}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: give how many instances of each service, e.g. 2")
    return int(text)


def day(text: str) -> date:
    """YYYY-MM-DD, e.g. 2026-10-31."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        parsed = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: give YYYY-MM-DD, e.g. 2026-10-31"
        ) from None
    _year_ok(parsed.year, text)
    return parsed


def _service_definition(name: str) -> Any:
    from leder.wiring import definition

    return definition(name)


def cmd_up(args: argparse.Namespace) -> int:
    from leder.stack import up

    return up(instances=args.instances)


def cmd_down(_: argparse.Namespace) -> int:
    from leder.stack import down

    return down()


def cmd_demo(args: argparse.Namespace) -> int:
    from leder.demo.run import main

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
    from infra.local import env_or_local, home
    from infra.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, TokenIssuer, token_key_files

    if args.role == "partner_system" and not args.organisation:
        # A partner's token says which organisation it is: that organisation's notifications are the
        # only ones it may send and read.
        print(
            "leder token: a partner system's token names its organisation: give --organisation",
            file=sys.stderr,
        )
        return 2
    # The issuer's private key: the one `leder up` made (made now if it has not run yet), or the one
    # LEDER_TOKEN_SIGNING_KEY_FILE names. The services hold only its public key.
    key_file = env_or_local("LEDER_TOKEN_SIGNING_KEY_FILE") or str(token_key_files(home())[0])
    try:
        issuer = TokenIssuer.from_file(
            key_file,
            issuer=env_or_local("LEDER_TOKEN_ISSUER") or DEFAULT_ISSUER,
            audience=env_or_local("LEDER_TOKEN_AUDIENCE") or DEFAULT_AUDIENCE,
        )
    except (OSError, ValueError) as failed:
        raise Failure(f"cannot read the token signing key {key_file}: {failed}") from failed
    print(issuer.mint(args.sub, args.role, args.organisation))
    return 0


def cmd_token_keys(args: argparse.Namespace) -> int:
    """The token issuer's key pair and the system key pair for a deployment without `leder up`: the
    private keys (0600) for the issuer (the web application) and `leder audit reconcile`, the public
    halves for every service. Keys already there are kept (their public halves written again)."""
    from infra.tokens import system_key_files, token_key_files

    out = Path(args.out)
    try:
        made = [*token_key_files(out), *system_key_files(out)]
    except OSError as failed:
        raise Failure(f"cannot write the token keys to {out}: {failed.strerror or failed}") from failed
    for path in made:
        print(path)
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from events.jsonschema import write_schemas

    for path in write_schemas():
        print(path)
    return 0


def _offline_settings(service: str) -> Any:
    """Settings for a command that needs only the service's database (not its broker or secret)."""
    from infra.local import env_or_local
    from infra.settings import Settings, database_url_for

    server = env_or_local("LEDER_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    own = os.environ.get(f"LEDER_{service.upper()}_DATABASE_URL") or database_url_for(
        server, f"leder_{service}"
    )
    return Settings(service=service, database_url=own, kafka_bootstrap="", topic_prefix="", http_port=0)


async def _open_store(service: str) -> Any:
    """The service's event store, opened on its database; a database out of reach is a Failure."""
    import asyncpg

    from infra.service import open_store

    settings = _offline_settings(service)
    try:
        return await open_store(_service_definition(service), settings)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as failed:
        where = settings.database_url.rsplit("@", 1)[-1]  # no password in what is printed
        raise Failure(
            f"cannot reach the {service} database ({where}): {failed}; is the system running (leder up)?"
        ) from failed


def cmd_docs(_: argparse.Namespace) -> int:
    from leder.docs import write_docs

    for path in write_docs():
        print(path)
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from infra.projections import rebuild

    definition = _service_definition(args.service)

    async def run() -> int:
        store = await _open_store(args.service)
        try:
            return await rebuild(store)
        finally:
            await store.pool.close()

    count = asyncio.run(run())
    names = ", ".join(p.name for p in definition.projections()) or "none"
    print(f"{args.service}: rebuilt projections ({names}) from {count} events")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Bring a service's store, restored from a backup, back from its topic (leder.recovery)."""
    import asyncpg
    from aiokafka.errors import KafkaError

    from events.topics import service_topic
    from infra import kafka
    from infra.local import env_or_local
    from infra.relay import OutboxRelay
    from infra.service import Runtime, consumer_group
    from infra.signing import PUBLIC_KEYS_ENV, verifier_from_env
    from leder.recovery import Recovered, RecoveryRefused, audit_log_rebuild, recover

    # Without them named here: the broker, topics and keys of the system `leder up` started.
    for name in (PUBLIC_KEYS_ENV, "LEDER_KEY_DIR"):
        if not os.environ.get(name) and (value := env_or_local(name)):
            os.environ[name] = value
    bootstrap = env_or_local("LEDER_KAFKA_BOOTSTRAP") or "127.0.0.1:9092"
    prefix = env_or_local("LEDER_TOPIC_PREFIX") or ""
    definition = _service_definition(args.service)
    topic = service_topic(args.service, prefix)

    async def run() -> Recovered:
        store = await _open_store(args.service)
        try:
            settings = replace(
                _offline_settings(args.service), kafka_bootstrap=bootstrap, topic_prefix=prefix
            )
            runtime = Runtime(
                settings=settings,
                pool=store.pool,
                store=store,
                broker=kafka.broker(bootstrap),
                relay=OutboxRelay(store, bootstrap, topic),
            )
            consumers = [(c, consumer_group(settings, c)) for c in definition.consumers(runtime)]
            verifier = verifier_from_env(prefix)
            # The audit log's own step: rebuilt in its recorded order, checked against its checkpoints.
            rebuild = audit_log_rebuild(bootstrap, prefix, verifier) if args.service == "audit" else None
            return await recover(store, consumers, bootstrap, topic, verifier, rebuild=rebuild)
        except RecoveryRefused as refused:
            raise Failure(f"{args.service}: not recovered: {refused}") from refused
        except (KafkaError, OSError) as failed:
            raise Failure(f"cannot read {topic} from the broker at {bootstrap}: {failed!r}") from failed
        except asyncpg.PostgresError as failed:
            raise Failure(f"{args.service}: the database refused: {failed}; nothing was put back") from failed
        finally:
            await store.pool.close()

    for line in asyncio.run(run()).lines():
        print(line)
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Rotate every live key-encryption key of a service (or of all) and rewrap its data keys to the
    new version: no data is decrypted or sealed again, and what was sealed before still opens."""
    from infra.keys import KeyManagerError
    from infra.local import env_or_local
    from infra.sealing import for_service

    # Without a key manager named here: the key files of the system `leder up` started from LEDER_HOME.
    local = not os.environ.get("LEDER_KEY_MANAGER") and not os.environ.get("LEDER_KEY_DIR")
    if local and (folder := env_or_local("LEDER_KEY_DIR")):
        os.environ["LEDER_KEY_DIR"] = folder
    services = list(SERVICES) if args.service == "all" else [args.service]

    async def run() -> dict[str, int]:
        counts: dict[str, int] = {}
        for service in services:
            store = await _open_store(service)
            try:
                async with store.pool.acquire() as conn:
                    counts[service] = await for_service(service).rotate(conn)
            except KeyManagerError as failed:
                raise Failure(f"{service}: the key manager refused: {failed}") from failed
            finally:
                await store.pool.close()
        return counts

    for service, count in asyncio.run(run()).items():
        print(f"{service}: rotated {count} key-encryption keys and rewrapped their data keys")
    return 0


def cmd_events_keygen(args: argparse.Namespace) -> int:
    """A new event signing key for one service (a first key, or a rotation): its private key in
    OUT/<service>.pem (0600, never overwritten), its public key pinned in --public-keys (older keys
    kept, to verify what they signed) or printed as a JWK."""
    from infra import signing

    path = Path(args.out) / f"{args.service}.pem"
    if path.exists():
        raise Failure(f"{path} exists: a new key goes to a new folder (the old one verifies old records)")
    key = signing.write_private_key(path)
    if args.public_keys:
        entry = signing.add_to_key_set(Path(args.public_keys), args.service, key.public_key())
        print(f"{args.service}: key {entry['kid']} in {path}, pinned in {args.public_keys}")
    else:
        print(json.dumps(signing.jwk(args.service, key.public_key()), indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from services.governance import report_service
    from services.governance.rendering import to_csv, to_html

    if args.kind == "activity" and args.to < args.from_:
        raise BadInput(f"--to {args.to} is before --from {args.from_}")

    async def run() -> tuple[str, dict[str, Any]]:
        store = await _open_store("governance")
        try:
            if args.kind == "kpis":
                start, end = report_service.month_bounds(args.month)
                return f"LeDeR key performance indicators, {args.month}", await report_service.kpi_report(
                    store, start, end
                )
            if args.kind == "activity":
                start, end = args.from_, args.to
                return f"LeDeR activity report, {start} to {end}", await report_service.activity_report(
                    store, start, end
                )
            if args.kind == "governance":
                start, end = report_service.quarter_bounds(args.quarter)
                return f"LeDeR governance report, {args.quarter}", await report_service.governance_report(
                    store, start, end
                )
            return f"LeDeR annual report, {args.year}", await report_service.annual_report(store, args.year)
        finally:
            await store.pool.close()

    title, report = asyncio.run(run())
    if args.html:
        _write(args.html, to_html(title, report))
    if args.csv:
        _write(args.csv, to_csv(report))
    if not (args.html or args.csv):
        print(json.dumps(report, indent=2, default=str))
    return 0


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as failed:
        raise Failure(f"cannot write {path}: {failed.strerror or failed}") from failed
    print(f"wrote {path}")


UP = (
    "Start the whole system on this machine and keep it running until Ctrl-C (or SIGTERM, a closed"
    " terminal, or `leder down`), which stops all of it: the five services"
    f" ({', '.join(SERVICES)}) on ports 8001 to 8005, each with its HTTP API and its API docs at /docs;"
    " the web application people use on port 8000; an embedded PostgreSQL (port 54329, data in"
    " .leder/pgdata) unless LEDER_DATABASE_URL names a server; and an embedded tansu Kafka broker"
    " (port 9092) unless LEDER_KAFKA_BOOTSTRAP names one. LEDER_HOME (default .leder) holds its data,"
    " logs and the token signing secret; LEDER_BASE_PORT moves the services' ports. If a port it needs"
    " is taken it starts nothing and says which process holds it."
)
DOWN = (
    "Stop the system `leder up` (or `leder demo`) started from this LEDER_HOME (default .leder),"
    " from any terminal: the services, the web application, PostgreSQL and the broker."
)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="leder", description="The LeDeR case system")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser(
        "up",
        help="run the whole system: five services, the web application, PostgreSQL and the broker",
        description=UP,
    )
    up.add_argument(
        "--instances",
        type=instances,
        default=1,
        help="how many processes of each service (default 1): they share its database and consumer"
        " groups, and one relay publishes at a time; the second listens 10 ports above the first"
        " (8011-8015), the third 20 above, and so on; the web application talks to the first",
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser(
        "down", help="stop the system `leder up` started from this LEDER_HOME", description=DOWN
    ).set_defaults(func=cmd_down)
    demo = sub.add_parser(
        "demo",
        help="a realistic caseload through the running system over simulated months (starts it if need be)",
        description="Carry a seeded caseload through the running system (started as by `leder up` if it"
        " is not running) over simulated months ending yesterday, then print what was made and where"
        " to look. The system must hold no cases yet.",
    )
    demo.add_argument(
        "--notifications", type=int, default=300, help="how many deaths are notified (default 300)"
    )
    demo.add_argument(
        "--months",
        type=int,
        default=18,
        help="how many months the caseload spans, ending yesterday (default 18)",
    )
    demo.add_argument(
        "--seed", type=int, default=2026, help="the same seed makes the same caseload (default 2026)"
    )
    demo.add_argument("--stop", action="store_true", help="stop the system afterwards if the demo started it")
    demo.set_defaults(func=cmd_demo)
    serve = sub.add_parser(
        "serve",
        help="run one service, or the web application (leder up runs them all)",
        description="Run one service or the web application in the foreground, configured by LEDER_*"
        " environment variables (see README.md).",
    )
    serve.add_argument("service", choices=(*SERVICES, "web"), help="which one: %(choices)s")
    serve.set_defaults(func=cmd_serve)
    roles = "\n".join(f"  {role:<16} {what}" for role, what in PERSON_ROLES.items())
    token = sub.add_parser(
        "token",
        help="mint a bearer token for local use",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print a bearer token (valid 8 hours) for calling the services' HTTP APIs, signed\n"
        "with the token issuer's private key (LEDER_TOKEN_SIGNING_KEY_FILE, or the one `leder up`\n"
        "made); the services hold only its public key. Not for the `system` role, which is the\n"
        f"services' own.\n\nroles:\n{roles}",
    )
    token.add_argument(
        "--role",
        required=True,
        choices=tuple(PERSON_ROLES),
        metavar="ROLE",
        help=f"who the token speaks for: {', '.join(PERSON_ROLES)} (see the roles above)",
    )
    token.add_argument("--sub", required=True, help="who the token is for: their user id, e.g. lena.lac")
    token.add_argument(
        "--organisation", help="the organisation the person or partner system belongs to (its ODS code)"
    )
    token.set_defaults(func=cmd_token)
    token_keys = sub.add_parser(
        "token-keys",
        help="make the token signing keys and their public halves (for a deployment without leder up)",
        description="Write to OUT the people token key (token-signing-key.pem, 0600: the web application's"
        " alone) and its JWKS (token-jwks.json: every service's), and the system token key"
        " (system-token-key.pem, 0600: leder audit reconcile's) and its public key"
        " (system-token-public-key.pem: every service's). Existing keys are kept.",
    )
    token_keys.add_argument("--out", required=True, help="the folder the keys are written to")
    token_keys.set_defaults(func=cmd_token_keys)
    sub.add_parser("schemas", help="write the JSON Schema of every event to events/schemas/").set_defaults(
        func=cmd_schemas
    )
    sub.add_parser(
        "docs", help="write the AsyncAPI and OpenAPI documents of every service to docs/"
    ).set_defaults(func=cmd_docs)
    recover = sub.add_parser(
        "recover",
        help="bring a service's store, restored from a backup, back from its topic",
        description="Put back the events a service's store lost (restored from a backup) from the service's"
        " topic, byte for byte and signature-checked, with its projections and inbox positions; then its"
        " fence lifts. See the README's 'Recovering a restored service'.",
    )
    recover.add_argument("service", choices=SERVICES, help="the service whose store was restored")
    recover.set_defaults(func=cmd_recover)
    rebuild = sub.add_parser("rebuild", help="rebuild a service's projections from its event store")
    rebuild.add_argument("service", choices=SERVICES, help="which service: %(choices)s")
    rebuild.set_defaults(func=cmd_rebuild)
    keys = sub.add_parser("keys", help="the key-encryption keys of the services' personal data")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    rotate = key_commands.add_parser(
        "rotate",
        help="rotate every live key-encryption key and rewrap the data keys under the new version",
        description="Rotate each case's key-encryption key in the key manager (LEDER_KEY_MANAGER) and"
        " rewrap its data key in the service's database to the new version, without decrypting data.",
    )
    rotate.add_argument("service", choices=(*SERVICES, "all"), help="which service, or all: %(choices)s")
    rotate.set_defaults(func=cmd_keys_rotate)
    events = sub.add_parser("events", help="the keys the services sign their events with")
    event_commands = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    keygen = event_commands.add_parser(
        "keygen",
        help="make a service's event signing key (first, or rotated) and pin its public key",
        description="Write a new Ed25519 key to OUT/<service>.pem (0600) and add its public key to the"
        " pinned file every consumer reads (LEDER_EVENT_PUBLIC_KEYS_FILE), keeping the older keys.",
    )
    keygen.add_argument("--service", required=True, choices=SERVICES, help="which service: %(choices)s")
    keygen.add_argument("--out", required=True, help="the folder the private key is written to")
    keygen.add_argument("--public-keys", help="the pinned public keys file to add it to (else printed)")
    keygen.set_defaults(func=cmd_events_keygen)
    _report_commands(sub)
    from services.audit.cli import add_commands

    add_commands(sub, _open_store)
    return p


def _report_commands(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="a governance report: kpis, activity, governance or annual",
        description="A report from the governance service's database, as JSON on stdout, or written as"
        " HTML (--html) or CSV (--csv). `leder report KIND --help` describes each kind's options.",
    )
    kinds = report.add_subparsers(dest="kind", required=True, metavar="KIND")
    output = Parser(add_help=False)
    output.add_argument("--html", metavar="FILE", help="write a self-contained HTML page with charts here")
    output.add_argument("--csv", metavar="FILE", help="write the report as CSV here")
    kpis = kinds.add_parser(
        "kpis",
        parents=[output],
        help="the key performance indicators of a month",
        description="The key"
        " performance indicators of one month, with the backlog by age and the twelve months to it.",
    )
    kpis.add_argument("--month", required=True, type=month, help="the month, YYYY-MM (e.g. 2026-10)")
    activity = kinds.add_parser(
        "activity",
        parents=[output],
        help="what was done between two dates",
        description="What was notified, allocated, reviewed and closed from one date to another.",
    )
    activity.add_argument(
        "--from", dest="from_", required=True, type=day, help="the first day, YYYY-MM-DD (e.g. 2026-01-01)"
    )
    activity.add_argument("--to", required=True, type=day, help="the last day, YYYY-MM-DD (e.g. 2026-03-31)")
    governance = kinds.add_parser(
        "governance",
        parents=[output],
        help="the governance group's report of a quarter",
        description="The governance group's report of one quarter: QA outcomes, learning themes, actions.",
    )
    governance.add_argument(
        "--quarter", required=True, type=quarter, help="the quarter, YYYY-Qn (e.g. 2026-Q3)"
    )
    annual = kinds.add_parser(
        "annual",
        parents=[output],
        help="the annual report of a calendar year",
        description="The annual report of one calendar year, with the completed reviews by group.",
    )
    annual.add_argument("--year", required=True, type=year, help="the year, YYYY (e.g. 2026)")
    report.set_defaults(func=cmd_report)


def main(argv: list[str] | None = None) -> int:
    from infra.logging import configure_logging

    # Commands print their results on stdout; logs go to stderr (a service reconfigures them at start).
    configure_logging("leder", os.environ.get("LEDER_LOG_LEVEL", "WARNING"))
    args = parser().parse_args(argv)
    command = " ".join(["leder", *(w for w in (args.command, getattr(args, "kind", None)) if w)])
    try:
        result: int = args.func(args)
    except BadInput as bad:
        print(f"{command}: {bad}", file=sys.stderr)
        return 2
    except Failure as failed:
        print(f"{command}: {failed}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
