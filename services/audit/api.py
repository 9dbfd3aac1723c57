"""The audit service's HTTP API, for information-governance officers (and the LAC, for histories
without personal fields). Every read of the log is itself recorded in the log."""

import asyncio
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from events import Envelope
from events.audit import AuditLogRead
from infra.auth import Caller, require_roles
from infra.deps import CommandContext, Store
from infra.eventstore import Context, EventStore
from infra.http import ResponseModel
from infra.params import MAX_INT, Moment
from infra.problems import Problem
from services.audit import access as reads
from services.audit import export as case_export
from services.audit import keys, log, store
from services.audit.replay import PERSON_FIELDS, state_as_of, summary

router = APIRouter(tags=["audit"])
IG = Annotated[Caller, Depends(require_roles("ig_officer"))]
IG_OR_LAC = Annotated[Caller, Depends(require_roles("ig_officer", "lac"))]


async def _read(
    event_store: EventStore,
    context: Context,
    caller: Caller,
    what: str,
    case_id: UUID | None = None,
    as_of: datetime | None = None,
    reason: str | None = None,
) -> None:
    read = AuditLogRead(
        reader=caller.sub, role=caller.role, what=what, case_id=case_id, as_of=as_of, reason=reason
    )
    async with event_store.transaction() as conn:
        await store.record(event_store, conn, read, context, case_id=case_id)


REFERENCE = re.compile(r"^LDR-\d{4}-\d{5}$")


class CaseFound(ResponseModel):
    case_id: str
    reference: str | None


class HistoryEntry(ResponseModel):
    position: int = Field(description="the entry's position in the audit log")
    event_id: str
    occurred_at: datetime
    when: datetime = Field(description="the same as occurred_at")
    recorded_at: datetime
    who: str = Field(description="the actor's id (a `sub`, a partner system, `system`)")
    who_name: str | None
    role: str | None
    actor_kind: str
    source: str = Field(description="the service that recorded the event")
    source_sequence: int
    event_type: str
    what: str = Field(description="the same as event_type")
    summary: str = Field(description="the event in a few words")
    data: dict[str, Any] = Field(description="the event's data; for the LAC, sealed personal data withheld")
    signature: str | None = Field(
        None,
        description="the publishing service's Ed25519 signature (base64url) over `leder-event-v1\\n`, the"
        " topic, `\\n` and the envelope's bytes as logged; none for the audit service's own events and"
        " events filled in by reconciliation",
    )
    signing_key_id: str | None = Field(
        None, description="the signing key's id: the RFC 7638 thumbprint of its pinned public key"
    )
    signed_topic: str | None = Field(None, description="the topic the event was signed for")


class History(ResponseModel):
    case_id: str
    reference: str | None
    entries: list[HistoryEntry]


class CaseStateView(ResponseModel):
    """The case as the log shows it stood at `as_of`."""

    case_id: str
    as_of: str
    reference: str | None
    status: str
    review_type: str | None
    focused_reasons: list[str]
    reviewer: str | None
    senior_reviewer: str | None
    review_status: str | None
    pauses: list[dict[str, Any]]
    qa_decisions: list[dict[str, Any]]
    actions: list[str]
    linked_actions: list[dict[str, Any]] = Field(description="each action agreed for the case and its status")
    events_seen: int


class AccessEntry(ResponseModel):
    position: int
    occurred_at: datetime
    when: datetime
    who: str
    who_name: str | None
    role: str | None
    actor_kind: str
    event_type: str
    what: str
    service: str = Field(description="the service read from: `notification`, `review`, `audit`, ...")
    read: str = Field(
        description="what was read: `personal_details`, `case`, `review`, `action`, `history`, `state`, ..."
    )
    description: str
    reason: str | None
    as_of: str | None
    case_id: str | None
    reference: str | None


class AccessPage(ResponseModel):
    access: list[AccessEntry]
    next_after: int | None = Field(description="the `after` of the next page; null on the last")


class Gap(ResponseModel):
    first: int
    last: int
    noticed_at: str


class Gaps(ResponseModel):
    gaps: dict[str, list[Gap]] = Field(description="per source service, the source_sequences missing")


class CheckpointView(ResponseModel):
    tree_size: int
    root_hash: str
    signed_at: str
    signature: str
    public_key: str
    algorithm: str
    key_id: str
    key_fingerprint: str


class LatestCheckpoint(CheckpointView):
    signature_valid: bool


class InclusionProof(ResponseModel):
    leaf_index: int
    tree_size: int
    leaf_hash: str
    proof: list[str]
    root_hash: str


class ConsistencyProof(ResponseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class VerificationView(ResponseModel):
    ok: bool
    entries: int
    first_bad_position: int | None
    problem: str | None
    checkpoint_tree_size: int | None
    root_hash: str | None = Field(
        description="of the whole log as recomputed (hex), when every entry checked out"
    )
    checkpoint: dict[str, Any] | None = Field(description="the latest signed checkpoint, which was checked")
    checked_at: datetime = Field(description="when the verification that answered began")


@router.get("/audit/cases")
async def find_case(
    caller: IG_OR_LAC,
    event_store: Store,
    context: CommandContext,
    q: Annotated[
        str | None, Query(max_length=100, description="a case reference (LDR-2026-00042) or a case id")
    ] = None,
    reference: Annotated[
        str | None, Query(max_length=100, description="a case reference (the same as q)")
    ] = None,
) -> CaseFound:
    """The case a person names, by its reference or its id: {"case_id", "reference"}."""
    wanted = (q or reference or "").strip()
    if not wanted:
        raise Problem(422, "case_wanted", "give a case reference or a case id (?q=LDR-2026-00042)")
    pool = event_store.pool
    case_id: UUID | None
    if REFERENCE.match(wanted.upper()):
        case_id = await store.find_case(pool, wanted.upper())
    else:
        try:
            case_id = UUID(wanted)
        except ValueError:
            raise Problem(
                422,
                "bad_case_reference",
                f"{wanted[:60]!r} is neither a case reference (LDR-2026-00042) nor a case id",
            ) from None
        case_id = case_id if await store.case_known(pool, case_id) else None
    if case_id is None:
        raise Problem(404, "unknown_case", f"the audit log has no case {wanted[:60]}")
    await _read(event_store, context, caller, "find case", case_id)
    return CaseFound(case_id=str(case_id), reference=(await store.references(pool, [case_id])).get(case_id))


def _without_personal(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: ("[sealed personal data withheld]" if k == "personal" else _without_personal(v))
            for k, v in data.items()
        }
    return data


@router.get("/audit/cases/{case_id}/history")
async def history(case_id: UUID, caller: IG_OR_LAC, event_store: Store, context: CommandContext) -> History:
    """Every event of the case from every service, in the order things happened."""
    pool = event_store.pool
    logged = await store.case_entries(pool, case_id)
    await _read(event_store, context, caller, "history", case_id)
    names = await store.names(pool, _people(e for _, e in logged))
    signed = await store.signatures(pool, (position for position, _ in logged))
    entries = []
    for position, e in logged:
        signature = signed.get(position)
        data = e.data if caller.role == "ig_officer" else _without_personal(e.data)
        entries.append(
            {
                "position": position,
                "event_id": str(e.event_id),
                "occurred_at": e.occurred_at,
                "when": e.occurred_at,
                "recorded_at": e.recorded_at,
                "who": e.actor.id,
                "who_name": names.get(e.actor.id),
                "role": e.actor.role,
                "actor_kind": e.actor.kind,
                "source": e.source,
                "source_sequence": e.source_sequence,
                "event_type": e.event_type,
                "what": e.event_type,
                "summary": summary(e, names),
                "data": data,
                "signature": signature.signature if signature else None,
                "signing_key_id": signature.key_id if signature else None,
                "signed_topic": signature.topic if signature else None,
            }
        )
    reference = (await store.references(pool, [case_id])).get(case_id)
    return History(case_id=str(case_id), reference=reference, entries=entries)


def _people(envelopes: Iterable[Envelope]) -> set[str]:
    """Everyone an entry names: its actor, and the people its summary names."""
    people: set[str] = set()
    for e in envelopes:
        people.add(e.actor.id)
        people |= {v for k, v in e.data.items() if k in PERSON_FIELDS and isinstance(v, str)}
    return people


@router.get("/audit/cases/{case_id}/state")
async def state(
    case_id: UUID,
    caller: IG_OR_LAC,
    event_store: Store,
    context: CommandContext,
    as_of: Annotated[
        Moment | None, Query(description="ISO 8601, from 1900 to 2100 (in UTC too); default now")
    ] = None,
) -> CaseStateView:
    moment = as_of or datetime.now(UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # a time without a zone is UTC
    pool = event_store.pool
    logged = await store.case_entries(pool, case_id)
    await _read(event_store, context, caller, "state", case_id, moment)
    state = state_as_of(str(case_id), [e for _, e in logged], moment)
    state.reference = (await store.references(pool, [case_id])).get(case_id)  # named even before it opened
    return CaseStateView.model_validate(state.__dict__)


@router.get(
    "/audit/cases/{case_id}/export",
    response_class=Response,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "a zip of the export's files",
        }
    },
)
async def export(
    case_id: UUID,
    caller: IG,
    event_store: Store,
    context: CommandContext,
    reason: Annotated[
        str | None, Query(max_length=500, description="why the case is exported: in the access log")
    ] = None,
) -> Response:
    """Every event of the case as JSON Lines with an inclusion proof each, the same as CSV, and the
    signed checkpoint the proofs lead to, in one zip: what `leder audit export` writes."""
    if not await store.case_known(event_store.pool, case_id):
        raise Problem(404, "unknown_case", f"the audit log has no case {case_id}")
    why = (reason or "").strip() or None
    # First: the export shows its own making.
    await _read(event_store, context, caller, "export", case_id, reason=why)
    try:
        async with event_store.pool.acquire() as conn:
            gathered = await case_export.gather(conn, case_id)
    except keys.KeyMissing as missing:  # a checkpoint to prove the export against cannot be signed
        raise Problem(503, "no_signing_key", str(missing)) from None
    made = await asyncio.to_thread(case_export.build, case_id, *gathered)
    body = await asyncio.to_thread(case_export.zipped, made)
    filename = f"{made.name}-audit-export.zip"
    return Response(
        body,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/audit/access")
async def access(
    caller: IG,
    event_store: Store,
    context: CommandContext,
    case_id: UUID | None = None,
    user: Annotated[str | None, Query(max_length=256)] = None,
    from_: Annotated[Moment | None, Query(alias="from", description="ISO 8601, from 1900 to 2100")] = None,
    to: Annotated[Moment | None, Query(description="ISO 8601, from 1900 to 2100")] = None,
    after: Annotated[
        int | None, Query(ge=-1, le=MAX_INT, description="the last position of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> AccessPage:
    """Who looked at this case; what did this person look at: every read of a case by a person, from
    every service (personal details, the case, its review, its actions, its audit history and export),
    and the reads of the audit log. In log order, a page at a time: `next_after` is the `after` of the
    next page (null on the last)."""
    pool = event_store.pool
    rows = await pool.fetch(
        f"SELECT position, envelope FROM audit_log WHERE {reads.IS_READ}"
        " AND ($1::uuid IS NULL OR case_id = $1) AND ($2::text IS NULL OR actor_id = $2)"
        " AND ($3::timestamptz IS NULL OR occurred_at >= $3)"
        " AND ($4::timestamptz IS NULL OR occurred_at <= $4)"
        " AND ($5::bigint IS NULL OR position > $5)"
        " ORDER BY position LIMIT $6",
        case_id,
        user,
        from_,
        to,
        after,
        limit + 1,
    )
    await _read(event_store, context, caller, "access", case_id)
    page = [(row["position"], Envelope.from_bytes(row["envelope"])) for row in rows[:limit]]
    references = await store.references(pool, {e.case_id for _, e in page if e.case_id})
    names = await store.names(pool, {e.actor.id for _, e in page})
    out = []
    for position, e in page:
        described = reads.describe(e)
        reason = e.data.get("reason")
        out.append(
            {
                "position": position,
                "occurred_at": e.occurred_at,
                "when": e.occurred_at,
                "who": e.actor.id,
                "who_name": names.get(e.actor.id),
                "role": e.actor.role,
                "actor_kind": e.actor.kind,
                "event_type": e.event_type,
                "what": e.event_type,
                "service": described.service,
                "read": described.read,
                "description": described.description,
                "reason": reason if isinstance(reason, str) else None,
                "as_of": e.data.get("as_of"),
                "case_id": str(e.case_id) if e.case_id else None,
                "reference": references.get(e.case_id) if e.case_id else None,
            }
        )
    return AccessPage.model_validate(
        {"access": out, "next_after": page[-1][0] if len(rows) > limit else None}
    )


@router.get("/audit/gaps")
async def gaps(_: IG, event_store: Store) -> Gaps:
    async with event_store.pool.acquire() as conn:
        return Gaps.model_validate({"gaps": await store.gaps(conn)})


class ForkView(ResponseModel):
    id: int
    consumer: str = Field(description="where it was met: a consumer of a service's topic, or reconcile")
    source: str | None
    source_sequence: int | None = Field(description="the other event's source sequence, where known")
    stream: str | None
    stream_version: int | None
    logged_event_id: str | None = Field(description="the event the audit log holds at that place")
    logged_hash: str | None = Field(description="SHA-256 of its bytes, hex")
    other_event_id: str | None = Field(description="the other event, dead-lettered, never logged")
    other_hash: str
    reason: str
    topic: str | None
    kafka_partition: int | None
    kafka_offset: int | None
    seen_at: str
    cleared_at: str | None = Field(description="when an operator acknowledged it; null while open")
    cleared_how: str | None


class Forks(ResponseModel):
    forks: list[ForkView] = Field(
        description="every fork met (two events at one source sequence or stream version), oldest first"
    )
    open: int = Field(description="how many are not acknowledged: the audit service is not ready meanwhile")


@router.get("/audit/forks")
async def forks(
    _: IG,
    event_store: Store,
    open_only: Annotated[bool, Query(alias="open", description="only those not acknowledged")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> Forks:
    """Each fork the audit service met: a source's event whose bytes differ from the logged one at the
    same source sequence (or stream version), with both events' ids and hashes (infra.inbox)."""
    rows = await store.forks(event_store.pool, open_only, limit)
    return Forks.model_validate({"forks": rows, "open": sum(1 for r in rows if r["cleared_at"] is None)})


@router.post("/audit/checkpoints", status_code=201)
async def sign(_: IG, event_store: Store) -> CheckpointView:
    try:
        async with event_store.pool.acquire() as conn:
            return CheckpointView.model_validate((await log.sign_checkpoint(conn)).as_json())
    except keys.KeyMissing as missing:
        raise Problem(503, "no_signing_key", str(missing)) from None


@router.get("/audit/checkpoints/latest")
async def latest(_: IG, event_store: Store) -> LatestCheckpoint:
    async with event_store.pool.acquire() as conn:
        checkpoint = await log.latest_checkpoint(conn)
    if checkpoint is None:
        raise Problem(404, "no_checkpoint", "no checkpoint has been signed yet")
    try:
        valid = checkpoint.signature_valid(keys.pinned_public_key())
    except keys.KeyMissing:
        valid = False  # nothing to check it with: not vouched for
    return LatestCheckpoint.model_validate(checkpoint.as_json() | {"signature_valid": valid})


@router.get("/audit/proofs/inclusion")
async def inclusion(
    _: IG,
    event_store: Store,
    event_id: UUID,
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> InclusionProof:
    """The proof that the event is in the log. Not recorded as a read: it shows hashes, none of the
    case's content, and recording it would grow the very tree it proves against (the case export,
    which carries the proofs with the events, is recorded)."""
    async with event_store.pool.acquire() as conn:
        position = await conn.fetchval("SELECT position FROM audit_log WHERE event_id = $1", event_id)
        if position is None:
            raise Problem(404, "not_in_log", f"event {event_id} is not in the audit log")
        proof = await log.inclusion_proof(conn, position, tree_size)
    if proof is None:
        raise Problem(422, "bad_tree_size", f"entry {position} is not in a tree of {tree_size}")
    return InclusionProof.model_validate(proof.as_json())


@router.get("/audit/proofs/consistency")
async def consistency(
    _: IG,
    event_store: Store,
    from_: Annotated[int, Query(alias="from", ge=1, le=MAX_INT)],
    to: Annotated[int, Query(ge=1, le=MAX_INT)],
) -> ConsistencyProof:
    # From the tiles (services.audit.log): O(log n) nodes, not every leaf of the log.
    async with event_store.pool.acquire() as conn:
        proved = await log.consistency_proof(conn, from_, to)
        size = to if proved is not None else await log.log_size(conn)
    if proved is None:
        raise Problem(
            422, "bad_tree_sizes", f"no consistency proof from {from_} to {to} (log has {min(size, to)})"
        )
    return ConsistencyProof(
        first=from_,
        second=to,
        first_root=proved.first_root.hex(),
        second_root=proved.second_root.hex(),
        proof=[h.hex() for h in proved.path],
    )


@router.get("/audit/verification")
async def verification(
    request: Request, caller: IG, event_store: Store, context: CommandContext
) -> VerificationView:
    """The whole log recomputed and checked against every checkpoint published outside the database
    (LEDER_AUDIT_CHECKPOINT_LOG) and the latest signed one, each signature with the pinned public key
    (LEDER_AUDIT_PUBLIC_KEY_FILE), never a key the log holds: ok, the number of entries, the
    recomputed root, the checkpoint, and the first bad entry if any. A verification
    already running answers every caller who asks meanwhile (one at a time is enough); `checked_at`
    is when the one that answered began."""
    await _read(event_store, context, caller, "verification")
    state = request.app.state
    running: asyncio.Task[dict[str, Any]] | None = getattr(state, "audit_verification", None)
    if running is None or running.done():
        running = asyncio.create_task(_verify(event_store.pool))
        state.audit_verification = running
    return VerificationView.model_validate(await asyncio.shield(running))


async def _verify(pool: asyncpg.Pool) -> dict[str, Any]:
    began = datetime.now(UTC)
    try:
        trust = await asyncio.to_thread(log.configured_trust)
    except keys.KeyMissing as missing:
        return log.Verification(False, 0, problem=f"nothing to verify with: {missing}").__dict__ | {
            "checked_at": began
        }
    result = await log.verify_off_the_loop(pool, trust)
    return result.__dict__ | {"checked_at": began}
