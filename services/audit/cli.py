"""`leder audit …`: the IG officer's command-line tools. Reads are recorded in the log like the API's."""

import argparse
import asyncio
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from events import Actor, Envelope
from events.audit import AuditLogRead
from events.topics import SERVICES
from infra.eventstore import Context, EventStore
from services.audit import export as case_export
from services.audit import log, merkle, store
from services.audit.reconcile import reconcile
from services.audit.replay import state_as_of, summary


def add_commands(sub: Any, store_for: Any) -> None:
    audit = sub.add_parser(
        "audit", help="the audit log: verify, replay, proofs, gaps, access, reconcile, export"
    )
    commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser(
        "verify", help="recompute the whole tree and check the latest signed checkpoint"
    )
    verify.set_defaults(run=_verify)
    proof = commands.add_parser("verify-proof", help="check an inclusion or consistency proof offline")
    proof.add_argument("--file", required=True, help="a proof as the API or `audit export` gives it (JSON)")
    proof.set_defaults(run=_verify_proof, offline=True)
    replay = commands.add_parser("replay", help="a case's history, and its state at a moment")
    replay.add_argument("case_id")
    replay.add_argument("--as-of", help="ISO 8601 time")
    replay.set_defaults(run=_replay)
    gaps = commands.add_parser("gaps", help="missing ranges of each service's sequence")
    gaps.set_defaults(run=_gaps)
    access = commands.add_parser("access", help="who looked at a case, or what a person looked at")
    access.add_argument("--case")
    access.add_argument("--user")
    access.set_defaults(run=_access)
    rec = commands.add_parser("reconcile", help="fetch what the log is missing from each service")
    rec.set_defaults(run=_reconcile)
    export = commands.add_parser("export", help="a case's history as JSON Lines and CSV, with proofs")
    export.add_argument("case_id")
    export.add_argument("--out", default=".")
    export.set_defaults(run=_export)
    for command in (verify, replay, gaps, access, rec, export):
        command.add_argument(
            "--as",
            dest="reader",
            default=os.environ.get("USER") or getpass.getuser(),
            help="who is reading (recorded in the log)",
        )
    audit.set_defaults(func=lambda args: _main(args, store_for))


def _main(args: argparse.Namespace, store_for: Any) -> int:
    if getattr(args, "offline", False):
        return int(args.run(args, None))

    async def run() -> int:
        s: EventStore = await store_for("audit")
        try:
            return int(await args.run(args, s))
        finally:
            await s.pool.close()

    return asyncio.run(run())


async def _record(s: EventStore, args: argparse.Namespace, what: str, case_id: UUID | None = None) -> None:
    async with s.transaction() as conn:
        await store.record(
            s,
            conn,
            AuditLogRead(reader=args.reader, role="ig_officer", what=f"cli {what}", case_id=case_id),
            Context(Actor(kind="user", id=args.reader, role="ig_officer")),
            case_id=case_id,
        )


async def _verify(args: argparse.Namespace, s: EventStore) -> int:
    def progress(done: int, total: int) -> None:
        width = 40
        filled = int(width * done / total) if total else width
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} entries", end="", file=sys.stderr)

    await _record(s, args, "verify")
    async with s.pool.acquire() as conn:
        result = await log.verify(conn, progress)
    print(file=sys.stderr)
    print(json.dumps(result.__dict__, indent=2))
    return 0 if result.ok else 1


def _verify_proof(args: argparse.Namespace, _: Any) -> int:
    proof = json.loads(Path(args.file).read_text())
    hashes = [bytes.fromhex(h) for h in proof["proof"]]
    if "leaf_index" in proof:
        ok = merkle.verify_inclusion(
            proof["leaf_index"],
            proof["tree_size"],
            bytes.fromhex(proof["leaf_hash"]),
            hashes,
            bytes.fromhex(proof["root_hash"]),
        )
        if "envelope" in proof:  # the exported event itself must be the leaf
            ok = ok and merkle.leaf_hash(proof["envelope"].encode()) == bytes.fromhex(proof["leaf_hash"])
    else:
        ok = merkle.verify_consistency(
            proof["first"],
            proof["second"],
            bytes.fromhex(proof["first_root"]),
            bytes.fromhex(proof["second_root"]),
            hashes,
        )
    print("proof verifies" if ok else "PROOF DOES NOT VERIFY")
    return 0 if ok else 1


async def _replay(args: argparse.Namespace, s: EventStore) -> int:
    case_id = UUID(args.case_id)
    await _record(s, args, "replay", case_id)
    entries = await store.case_entries(s.pool, case_id)
    for position, e in entries:
        print(
            f"{position:>8}  {e.occurred_at:%Y-%m-%d %H:%M:%S}  {e.actor.id:<20} {e.actor.role or '':<16}"
            f" {e.event_type:<45} {summary(e)}"
        )
    moment = datetime.fromisoformat(args.as_of) if args.as_of else datetime.now(UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    print(
        json.dumps(state_as_of(str(case_id), [e for _, e in entries], moment).__dict__, indent=2, default=str)
    )
    return 0


async def _gaps(args: argparse.Namespace, s: EventStore) -> int:
    await _record(s, args, "gaps")
    async with s.pool.acquire() as conn:
        found = await store.gaps(conn)
    print(json.dumps(found, indent=2) if found else "no gaps")
    return 1 if found else 0


async def _access(args: argparse.Namespace, s: EventStore) -> int:
    case_id = UUID(args.case) if args.case else None
    await _record(s, args, "access", case_id)
    rows = await s.pool.fetch(
        "SELECT envelope FROM audit_log WHERE event_type IN ('notification.PersonalDetailsViewed',"
        " 'audit.AuditLogRead') AND ($1::uuid IS NULL OR case_id = $1)"
        " AND ($2::text IS NULL OR actor_id = $2)"
        " ORDER BY position",
        case_id,
        args.user,
    )
    for row in rows:
        e = Envelope.from_bytes(row["envelope"])
        print(
            f"{e.occurred_at:%Y-%m-%d %H:%M:%S}  {e.actor.id:<20} {e.event_type:<40} {e.case_id or ''}"
            f"  {e.data.get('reason') or e.data.get('what') or ''}"
        )
    return 0


async def _reconcile(args: argparse.Namespace, s: EventStore) -> int:
    from infra.auth import mint_token
    from infra.settings import SERVICE_PORTS, jwt_secret_from_env

    await _record(s, args, "reconcile")
    token = mint_token(jwt_secret_from_env(), "audit-reconcile", "system")

    async def fetch(source: str, after: int, limit: int) -> tuple[list[str], int]:
        base = os.environ.get(f"LEDER_{source.upper()}_URL", f"http://127.0.0.1:{SERVICE_PORTS[source]}")
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            response = await client.get("/events", params={"after": after, "limit": limit})
            response.raise_for_status()
            body = response.json()
            return body["events"], body["last_sequence"]

    filled = await reconcile(s, [x for x in SERVICES if x != "audit"], fetch)
    print(json.dumps(filled))
    return 0


async def _export(args: argparse.Namespace, s: EventStore) -> int:
    case_id = UUID(args.case_id)
    await _record(s, args, "export", case_id)
    async with s.pool.acquire() as conn:
        gathered = await case_export.gather(conn, case_id)
    made = case_export.build(case_id, *gathered)
    print(f"wrote {', '.join(_write(Path(args.out), made.files))}")
    return 0


def _write(out: Path, files: dict[str, bytes]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    for name, contents in files.items():
        (out / name).write_bytes(contents)
    return [str(out / name) for name in files]
