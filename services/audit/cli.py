"""`leder audit …`: the IG officer's command-line tools. Reads are recorded in the log like the API's."""

import argparse
import asyncio
import json
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
from infra.inbox import acknowledge_forks
from services.audit import access as reads
from services.audit import export as case_export
from services.audit import keys, log, merkle, store
from services.audit.reconcile import BadRecord, reconcile
from services.audit.replay import state_as_of, summary


def case_id(text: str) -> UUID:
    """A case's id, a UUID as the services give it."""
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a case id: give the case's UUID, e.g. 6f1c2a94-3b7e-4d0a-9c55-1e2f3a4b5c6d"
        ) from None


def moment(text: str) -> datetime:
    """An ISO 8601 time; without a zone, UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give ISO 8601, e.g. 2026-10-05 or 2026-10-05T14:30+01:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_commands(sub: Any, store_for: Any) -> None:
    audit = sub.add_parser(
        "audit",
        help="the audit log: verify, replay, proofs, gaps, forks, access, reconcile, export",
        description="The IG officer's tools on the audit log (the audit service's database). Each read"
        " is itself recorded in the log under the name given by --reader.",
    )
    commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify",
        help="recompute the whole tree and check it against the published and the latest checkpoints",
        description="Recompute every entry and the tree, and check them against every checkpoint"
        " published outside the database (--checkpoint-log) and the latest one the database holds, each"
        " signature with the public key given (--public-key), never one the log holds. Exit 0 if the"
        " log verifies, 1 if not, 2 if there is no public key to verify with.",
    )
    verify.add_argument(
        "--checkpoint-log",
        help="the published checkpoints (signed notes, one after another)"
        " (default: LEDER_AUDIT_CHECKPOINT_LOG, as leder up writes it down)",
    )
    verify.set_defaults(run=_verify)
    proof = commands.add_parser(
        "verify-proof",
        help="check an inclusion or consistency proof, or a case's export, offline",
        description="Check proofs without the database: a proof as the API gives it, one line of an"
        " export's .jsonl, or a whole .jsonl as `leder audit export` writes it, every line against the"
        " signed checkpoint (for a .jsonl, CASE.checkpoint.json beside it), whose signature is checked"
        " with the public key given (--public-key), never one the files name. A proof without a signed"
        " checkpoint is refused. Exit 0 if all verify, 1 if not, 2 if the files are not what they"
        " should be.",
    )
    proof.add_argument(
        "--file",
        required=True,
        help="a proof (JSON) as the API gives it, or an export's CASE.jsonl (JSON Lines, a proof a line)",
    )
    proof.add_argument(
        "--checkpoint",
        help="the signed checkpoint the proofs lead to"
        " (default for CASE.jsonl: CASE.checkpoint.json beside it)",
    )
    proof.set_defaults(run=_verify_proof, offline=True)
    keygen = commands.add_parser(
        "keygen",
        help="make the audit log's signing key pair (for a deployment outside leder up)",
        description="Write audit-signing-key.pem (Ed25519, PKCS#8, 0600: give it to the audit service"
        " only, as LEDER_AUDIT_SIGNING_KEY_FILE) and audit-public-key.pem (give it to every verifier) in"
        " --out. An existing private key is kept: its public key is written again.",
    )
    keygen.add_argument("--out", required=True, help="the folder to write the two PEM files in")
    keygen.set_defaults(run=_keygen, offline=True)
    for command in (verify, proof):
        command.add_argument(
            "--public-key",
            help="the audit log's public key (PEM, or 64 hex digits), as its owner publishes it"
            " (default: LEDER_AUDIT_PUBLIC_KEY_FILE, as leder up writes it down)",
        )
    replay = commands.add_parser(
        "replay",
        help="a case's history, and its state at a moment",
        description="The case's events the log held at a moment (default now), and the case's state as"
        " it stood then.",
    )
    replay.add_argument("case_id", type=case_id, help="the case's id (a UUID)")
    replay.add_argument(
        "--as-of",
        type=moment,
        help="ISO 8601 time (without a zone, UTC); only what had happened by then (default now)",
    )
    replay.set_defaults(run=_replay)
    gaps = commands.add_parser("gaps", help="missing ranges of each service's sequence")
    gaps.set_defaults(run=_gaps)
    forks = commands.add_parser(
        "forks",
        help="events that collided with a logged one (same source sequence or stream version)",
        description="Every fork the audit service met: a source's event at a source sequence (or"
        " stream version) the log holds with another event id or other bytes, both events' ids and"
        " hashes, and when. An open fork keeps the audit service's /readyz false until it is"
        " acknowledged (--ack ID, or --ack-all) once the source is dealt with (`leder recover`)."
        " Exit 1 while any fork is open.",
    )
    forks.add_argument("--ack", type=int, action="append", metavar="ID", help="acknowledge this fork")
    forks.add_argument("--ack-all", action="store_true", help="acknowledge every open fork")
    forks.set_defaults(run=_forks)
    access = commands.add_parser(
        "access",
        help="who looked at a case, or what a person looked at",
        description="Every read of a case by a person, from every service (personal details, the case,"
        " its review, its actions, its audit history and export), and the audit log's reads, for one"
        " case (--case), by one person (--user), or both.",
    )
    access.add_argument("--case", type=case_id, help="only reads of this case (its UUID)")
    access.add_argument("--user", help="only reads by this person (their user id)")
    access.set_defaults(run=_access)
    rec = commands.add_parser(
        "reconcile",
        help="fetch what the log is missing from each service",
        description="Fetch from each service the events the log lacks and log them. A record that"
        " cannot be logged is named on stderr with the reason, and the rest are still logged; exit 1 if"
        " there was one.",
    )
    rec.set_defaults(run=_reconcile)
    export = commands.add_parser("export", help="a case's history as JSON Lines and CSV, with proofs")
    export.add_argument("case_id", type=case_id, help="the case's id (a UUID)")
    export.add_argument(
        "--out", default=".", help="the folder to write CASE.jsonl, CASE.csv and CASE.checkpoint.json in"
    )
    export.add_argument("--reason", help="why the case is exported: recorded with the read")
    export.set_defaults(run=_export)
    for command in (verify, replay, gaps, forks, access, rec, export):
        command.add_argument(
            "--reader",
            "--as",
            dest="reader",
            required=True,
            help="who is reading: your user id, recorded in the log with the read",
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


def _say_wrong(args: argparse.Namespace, message: str) -> None:
    print(f"leder audit {args.audit_command}: {message}", file=sys.stderr)


async def _record(
    s: EventStore,
    args: argparse.Namespace,
    what: str,
    case_id: UUID | None = None,
    as_of: datetime | None = None,
    reason: str | None = None,
) -> None:
    read = AuditLogRead(
        reader=args.reader,
        role="ig_officer",
        what=f"cli {what}",
        case_id=case_id,
        as_of=as_of,
        reason=(reason or "").strip()[:500] or None,
    )
    async with s.transaction() as conn:
        await store.record(
            s,
            conn,
            read,
            Context(Actor(kind="user", id=args.reader, role="ig_officer")),
            case_id=case_id,
        )


async def _verify(args: argparse.Namespace, s: EventStore) -> int:
    def progress(done: int, total: int) -> None:
        width = 40
        filled = int(width * done / total) if total else width
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} entries", end="", file=sys.stderr)

    try:
        public_key = _pinned_key(args)
    except keys.KeyMissing as missing:
        _say_wrong(args, str(missing))
        return 2
    from infra.local import env_or_local

    named = getattr(args, "checkpoint_log", None) or env_or_local("LEDER_AUDIT_CHECKPOINT_LOG")
    trust = log.trust_from(public_key, Path(named) if named else None)
    await _record(s, args, "verify")
    async with s.pool.acquire() as conn:
        result = await log.verify(conn, trust, progress)
    print(file=sys.stderr)
    print(json.dumps(result.__dict__, indent=2))
    return 0 if result.ok else 1


def _pinned_key(args: argparse.Namespace) -> bytes:
    """The public key given: --public-key, else the configured one; KeyMissing if none."""
    from infra.local import env_or_local

    named = getattr(args, "public_key", None) or env_or_local("LEDER_AUDIT_PUBLIC_KEY_FILE")
    if not named:
        raise keys.KeyMissing(
            "no public key to verify with: give the audit log's with --public-key FILE"
            " (or set LEDER_AUDIT_PUBLIC_KEY_FILE)"
        )
    return keys.load_public(Path(named))


class NotAProof(Exception):
    """A file that is not a proof, an export or a checkpoint: bad input (exit 2), not a failed proof."""


def _keygen(args: argparse.Namespace, _: Any) -> int:
    from infra.local import audit_key_files

    private, public = audit_key_files(Path(args.out))
    print(f"signing key (keep it secret, give it to the audit service only): {private}")
    print(f"public key (give it to every verifier): {public}")
    return 0


def _verify_proof(args: argparse.Namespace, _: Any) -> int:
    """A proof as the API gives it, one line of an export, or a whole export's .jsonl, against a
    signed checkpoint checked with the pinned key. Exit 0 if everything verifies, 1 if anything does
    not, 2 if the files (or the key) are not what they should be."""
    path = Path(args.file)
    named = getattr(args, "checkpoint", None)
    try:
        public_key = _pinned_key(args)
        text = _read(path)
        try:
            one = json.loads(text)
        except json.JSONDecodeError:
            one = None  # JSON Lines: an export's .jsonl
        if isinstance(one, dict):
            records = [one]
            if not named:
                raise NotAProof(
                    "a proof verifies only against a signed checkpoint: give it with --checkpoint"
                    " (the audit service's /audit/checkpoints/latest, or an export's CASE.checkpoint.json)"
                )
            checkpoint_path = Path(named)
        else:
            records = _json_lines(text)
            beside = path.with_name(path.name.removesuffix(".jsonl") + ".checkpoint.json")
            checkpoint_path = Path(named) if named else beside
            if not checkpoint_path.exists():
                raise NotAProof(f"no checkpoint at {checkpoint_path}: give it with --checkpoint")
        checkpoint = _load_checkpoint(checkpoint_path)
    except (NotAProof, keys.KeyMissing) as wrong:
        print(f"leder audit verify-proof: {wrong}", file=sys.stderr)
        return 2
    bad = 0
    for number, record in enumerate(records, 1):
        problems = _proof_problems(record, checkpoint)
        if problems:
            bad += 1
            where = f"line {number} (log position {record.get('position', record.get('leaf_index'))})"
            print(f"{where}: DOES NOT VERIFY: {'; '.join(problems)}")
    checkpoint_problems = _checkpoint_problems(checkpoint, public_key)
    for problem in checkpoint_problems:
        print(f"the checkpoint: DOES NOT VERIFY: {problem}")
    if bad or checkpoint_problems:
        print(
            f"DOES NOT VERIFY: {bad} of {len(records)} proofs,"
            f" {len(checkpoint_problems)} problem(s) with the checkpoint"
        )
        return 1
    what = (
        "proof verifies" if len(records) == 1 and isinstance(one, dict) else f"{len(records)} events verify"
    )
    print(
        f"{what} against the checkpoint of tree size {checkpoint.tree_size},"
        f" root {checkpoint.root_hash.hex()}, signed at {checkpoint.signed_at.isoformat()} by the pinned"
        f" key with fingerprint {log.fingerprint(public_key)}"
    )
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as failed:
        raise NotAProof(f"cannot read {path}: {getattr(failed, 'strerror', None) or failed}") from failed


def _json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise NotAProof(f"line {number} is not JSON: not a proof or an export's .jsonl") from None
        if not isinstance(record, dict):
            raise NotAProof(f"line {number} is not a proof")
        records.append(record)
    if not records:
        raise NotAProof("the file holds no proof")
    return records


def _load_checkpoint(path: Path) -> log.Checkpoint:
    try:
        raw = json.loads(_read(path))
        return log.Checkpoint(
            tree_size=int(raw["tree_size"]),
            root_hash=bytes.fromhex(raw["root_hash"]),
            signed_at=datetime.fromisoformat(raw["signed_at"]),
            signature=bytes.fromhex(raw["signature"]),
            public_key=bytes.fromhex(raw["public_key"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as wrong:
        raise NotAProof(f"{path} is not a signed checkpoint ({type(wrong).__name__}: {wrong})") from None


def _checkpoint_problems(checkpoint: log.Checkpoint, public_key: bytes) -> list[str]:
    if checkpoint.signature_valid(public_key):
        return []
    return [
        f"its signature does not verify with the pinned key (fingerprint {log.fingerprint(public_key)};"
        f" the checkpoint names {checkpoint.key_fingerprint})"
    ]


def _proof_problems(proof: dict[str, Any], checkpoint: log.Checkpoint) -> list[str]:
    """What is wrong with one proof against the checkpoint (none: it verifies). The proof must lead to
    the checkpoint's own tree head: a root or tree size the proof states is not trusted."""
    size, root = checkpoint.tree_size, checkpoint.root_hash
    try:
        hashes = [bytes.fromhex(h) for h in proof["proof"]]
        if "leaf_index" in proof:
            problems = []
            if (proof.get("tree_size"), proof.get("root_hash")) != (size, root.hex()):
                problems.append("the proof is for another tree head than the checkpoint's")
            leaf = bytes.fromhex(proof["leaf_hash"])
            # The exported event itself must be the leaf.
            if "envelope" in proof and merkle.leaf_hash(proof["envelope"].encode()) != leaf:
                problems.append("the event is not the one the log holds")
            if not merkle.verify_inclusion(int(proof["leaf_index"]), size, leaf, hashes, root):
                problems.append("the inclusion proof does not lead to the checkpoint's root")
            return problems
        if "first" in proof:
            ok = (proof["second"], bytes.fromhex(proof["second_root"])) == (size, root)
            ok = ok and merkle.verify_consistency(
                proof["first"], size, bytes.fromhex(proof["first_root"]), root, hashes
            )
            return [] if ok else ["the consistency proof does not lead to the checkpoint's tree head"]
    except KeyError as missing:
        return [f"it has no {missing}"]
    except (TypeError, ValueError, AttributeError) as wrong:
        return [f"it is malformed ({wrong})"]
    if "envelope" in proof:
        return ["the event has no inclusion proof (it is past the checkpoint)"]
    return ["it is neither an inclusion nor a consistency proof"]


async def _replay(args: argparse.Namespace, s: EventStore) -> int:
    case_id: UUID = args.case_id
    if not await store.case_known(s.pool, case_id):
        _say_wrong(args, f"the audit log has no case {case_id}")
        return 1
    await _record(s, args, "replay", case_id, args.as_of)
    until = args.as_of or datetime.now(UTC)  # now: after this read, which is itself listed
    entries = [(p, e) for p, e in await store.case_entries(s.pool, case_id) if e.occurred_at <= until]
    for position, e in entries:
        print(
            f"{position:>8}  {e.occurred_at:%Y-%m-%d %H:%M:%S}  {e.actor.id:<20} {e.actor.role or '':<16}"
            f" {e.event_type:<45} {summary(e)}"
        )
    state = state_as_of(str(case_id), [e for _, e in entries], until)
    state.reference = (await store.references(s.pool, [case_id])).get(case_id)  # named even before it opened
    print(json.dumps(state.__dict__, indent=2, default=str))
    return 0


async def _gaps(args: argparse.Namespace, s: EventStore) -> int:
    await _record(s, args, "gaps")
    async with s.pool.acquire() as conn:
        found = await store.gaps(conn)
    print(json.dumps(found, indent=2) if found else "no gaps")
    return 1 if found else 0


async def _forks(args: argparse.Namespace, s: EventStore) -> int:
    await _record(s, args, "forks")
    if args.ack or args.ack_all:
        cleared = await acknowledge_forks(s.pool, None if args.ack_all else args.ack, args.reader)
        unknown = sorted(set(args.ack or ()) - set(cleared))
        if unknown:
            _say_wrong(args, f"no open fork {', '.join(map(str, unknown))}")
        print(f"acknowledged: {', '.join(map(str, cleared)) or 'none'}")
    found = await store.forks(s.pool)
    for fork in found:
        state = f"cleared {fork['cleared_at']} ({fork['cleared_how']})" if fork["cleared_at"] else "OPEN"
        print(f"#{fork['id']} {state}: {fork['reason']} [{fork['consumer']}, seen {fork['seen_at']}]")
    still_open = [f for f in found if f["cleared_at"] is None]
    print(f"{len(still_open)} open fork(s) of {len(found)}" if found else "no forks")
    return 1 if still_open else 0


async def _access(args: argparse.Namespace, s: EventStore) -> int:
    case_id: UUID | None = args.case
    if case_id is not None and not await store.case_known(s.pool, case_id):
        _say_wrong(args, f"the audit log has no case {case_id}")
        return 1
    await _record(s, args, "access", case_id)
    rows = await s.pool.fetch(
        f"SELECT envelope FROM audit_log WHERE {reads.IS_READ} AND ($1::uuid IS NULL OR case_id = $1)"
        " AND ($2::text IS NULL OR actor_id = $2)"
        " ORDER BY position",
        case_id,
        args.user,
    )
    for row in rows:
        e = Envelope.from_bytes(row["envelope"])
        read = reads.describe(e)
        reason = e.data.get("reason")
        print(
            f"{e.occurred_at:%Y-%m-%d %H:%M:%S}  {e.actor.id:<20} {e.actor.role or '':<14}"
            f" {read.service:<12} {read.description:<45} {e.case_id or ''}"
            f"  {reason if isinstance(reason, str) else ''}"
        )
    return 0


class SourceUnreachable(Exception):
    """A service whose events could not be fetched."""


async def _reconcile(args: argparse.Namespace, s: EventStore) -> int:
    from infra.auth import SYSTEM_ROLE
    from infra.local import env_or_local
    from infra.settings import SERVICE_PORTS
    from infra.tokens import DEFAULT_AUDIENCE, SYSTEM_TOKEN_LIFETIME, TokenIssuer

    # The feeds answer the services' own `system` role, signed by the system key (never a person's
    # issuer's key, which no service holds).
    key_file = env_or_local("LEDER_SYSTEM_TOKEN_KEY_FILE")  # as `leder up` wrote it down
    if not key_file:
        _say_wrong(args, "no system token key: set LEDER_SYSTEM_TOKEN_KEY_FILE (or run leder up)")
        return 1
    audience = env_or_local("LEDER_TOKEN_AUDIENCE") or DEFAULT_AUDIENCE
    try:
        issuer = await asyncio.to_thread(TokenIssuer.system_from_file, key_file, audience)
    except (OSError, ValueError) as failed:
        _say_wrong(args, f"cannot read the system token key {key_file}: {failed}")
        return 1
    await _record(s, args, "reconcile")
    token = issuer.mint("audit-reconcile", SYSTEM_ROLE, ttl=SYSTEM_TOKEN_LIFETIME)

    async def fetch(source: str, after: int, limit: int) -> tuple[list[str], int]:
        base = env_or_local(f"LEDER_{source.upper()}_URL") or f"http://127.0.0.1:{SERVICE_PORTS[source]}"
        try:
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {token}"}
            ) as client:
                response = await client.get("/events", params={"after": after, "limit": limit})
                response.raise_for_status()
                body = response.json()
                return body["events"], body["last_sequence"]
        except (httpx.HTTPError, ValueError, KeyError) as failed:
            raise SourceUnreachable(
                f"cannot fetch the {source} service's events from {base}: {failed}"
            ) from failed

    bad: list[BadRecord] = []

    def report(record: BadRecord) -> None:
        # Each record that could not be logged, in a line as it is met; reconciliation goes on.
        bad.append(record)
        _say_wrong(args, record.describe())

    try:
        filled = await reconcile(s, [x for x in SERVICES if x != "audit"], fetch, report=report)
    except SourceUnreachable as failed:
        _say_wrong(args, str(failed))
        return 1
    print(json.dumps(filled))
    return 1 if bad else 0


async def _export(args: argparse.Namespace, s: EventStore) -> int:
    case_id: UUID = args.case_id
    if not await store.case_known(s.pool, case_id):
        _say_wrong(args, f"the audit log has no case {case_id}")
        return 1
    await _record(s, args, "export", case_id, reason=args.reason)
    try:
        async with s.pool.acquire() as conn:
            gathered = await case_export.gather(conn, case_id)
    except keys.KeyMissing as missing:  # the checkpoint the proofs lead to cannot be signed
        _say_wrong(args, str(missing))
        return 1
    made = case_export.build(case_id, *gathered)
    print(f"wrote {', '.join(_write(Path(args.out), made.files))}")
    return 0


def _write(out: Path, files: dict[str, bytes]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    for name, contents in files.items():
        (out / name).write_bytes(contents)
    return [str(out / name) for name in files]
