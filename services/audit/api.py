"""The audit service's HTTP API, for information-governance officers (and the LAC, for histories
without personal fields). Every read of the log is itself recorded in the log."""

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from events import Envelope
from events.audit import AuditLogRead
from infra.auth import Caller, require_roles
from infra.eventstore import Context, EventStore
from infra.problems import Problem
from infra.service import Runtime
from services.audit import log, merkle, store
from services.audit.replay import state_as_of, summary

router = APIRouter(tags=["audit"])
IG = Annotated[Caller, Depends(require_roles("ig_officer"))]
IG_OR_LAC = Annotated[Caller, Depends(require_roles("ig_officer", "lac"))]


def _store(request: Request) -> EventStore:
    runtime: Runtime = request.app.state.runtime
    return runtime.store


async def _read(
    request: Request, caller: Caller, what: str, case_id: UUID | None = None, as_of: datetime | None = None
) -> None:
    s = _store(request)
    async with s.transaction() as conn:
        await store.record(
            s,
            conn,
            AuditLogRead(reader=caller.sub, role=caller.role, what=what, case_id=case_id, as_of=as_of),
            Context(caller.actor, request.state.correlation_id),
            case_id=case_id,
        )


def _without_personal(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: ("[sealed personal data withheld]" if k == "personal" else _without_personal(v))
            for k, v in data.items()
        }
    return data


@router.get("/audit/cases/{case_id}/history")
async def history(case_id: UUID, request: Request, caller: IG_OR_LAC) -> dict[str, Any]:
    logged = await store.case_entries(_store(request).pool, case_id)
    await _read(request, caller, "history", case_id)
    entries = []
    for position, e in logged:
        data = e.data if caller.role == "ig_officer" else _without_personal(e.data)
        entries.append(
            {
                "position": position,
                "event_id": str(e.event_id),
                "when": e.occurred_at,
                "recorded_at": e.recorded_at,
                "who": e.actor.id,
                "role": e.actor.role,
                "actor_kind": e.actor.kind,
                "source": e.source,
                "source_sequence": e.source_sequence,
                "what": e.event_type,
                "summary": summary(e),
                "data": data,
            }
        )
    return {"case_id": str(case_id), "entries": entries}


@router.get("/audit/cases/{case_id}/state")
async def state(
    case_id: UUID,
    request: Request,
    caller: IG_OR_LAC,
    as_of: Annotated[datetime | None, Query(description="ISO 8601; default now")] = None,
) -> dict[str, Any]:
    moment = as_of or datetime.now(UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # a time without a zone is UTC
    logged = await store.case_entries(_store(request).pool, case_id)
    await _read(request, caller, "state", case_id, moment)
    return state_as_of(str(case_id), [e for _, e in logged], moment).__dict__


@router.get("/audit/access")
async def access(
    request: Request,
    caller: IG,
    case_id: UUID | None = None,
    user: str | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> dict[str, Any]:
    """Who looked at this case; what did this person look at."""
    rows = await _store(request).pool.fetch(
        "SELECT position, envelope FROM audit_log WHERE event_type IN"
        " ('notification.PersonalDetailsViewed', 'audit.AuditLogRead')"
        " AND ($1::uuid IS NULL OR case_id = $1) AND ($2::text IS NULL OR actor_id = $2)"
        " AND ($3::timestamptz IS NULL OR occurred_at >= $3)"
        " AND ($4::timestamptz IS NULL OR occurred_at <= $4)"
        " ORDER BY position",
        case_id,
        user,
        from_,
        to,
    )
    await _read(request, caller, "access", case_id)
    out = []
    for row in rows:
        e = Envelope.from_bytes(row["envelope"])
        out.append(
            {
                "position": row["position"],
                "when": e.occurred_at,
                "who": e.actor.id,
                "role": e.actor.role,
                "what": e.event_type,
                "case_id": str(e.case_id) if e.case_id else None,
                "reason": e.data.get("reason") or e.data.get("what"),
            }
        )
    return {"access": out}


@router.get("/audit/gaps")
async def gaps(request: Request, _: IG) -> dict[str, Any]:
    async with _store(request).pool.acquire() as conn:
        return {"gaps": await store.gaps(conn)}


@router.post("/audit/checkpoints", status_code=201)
async def sign(request: Request, _: IG) -> dict[str, Any]:
    async with _store(request).pool.acquire() as conn:
        return (await log.sign_checkpoint(conn)).as_json()


@router.get("/audit/checkpoints/latest")
async def latest(request: Request, _: IG) -> dict[str, Any]:
    async with _store(request).pool.acquire() as conn:
        checkpoint = await log.latest_checkpoint(conn)
    if checkpoint is None:
        raise Problem(404, "no_checkpoint", "no checkpoint has been signed yet")
    return checkpoint.as_json()


@router.get("/audit/proofs/inclusion")
async def inclusion(request: Request, _: IG, event_id: UUID, tree_size: int | None = None) -> dict[str, Any]:
    async with _store(request).pool.acquire() as conn:
        position = await conn.fetchval("SELECT position FROM audit_log WHERE event_id = $1", event_id)
        if position is None:
            raise Problem(404, "not_in_log", f"event {event_id} is not in the audit log")
        proof = await log.inclusion_proof(conn, position, tree_size)
    if proof is None:
        raise Problem(422, "bad_tree_size", f"entry {position} is not in a tree of {tree_size}")
    return proof.as_json()


@router.get("/audit/proofs/consistency")
async def consistency(
    request: Request, _: IG, from_: Annotated[int, Query(alias="from", ge=1)], to: Annotated[int, Query(ge=1)]
) -> dict[str, Any]:
    async with _store(request).pool.acquire() as conn:
        hashes = await log.leaf_hashes(conn, to)
    if to > len(hashes) or from_ > to:
        raise Problem(
            422, "bad_tree_sizes", f"no consistency proof from {from_} to {to} (log has {len(hashes)})"
        )
    return {
        "first": from_,
        "second": to,
        "first_root": merkle.root(hashes[:from_]).hex(),
        "second_root": merkle.root(hashes).hex(),
        "proof": [h.hex() for h in merkle.consistency_proof(from_, hashes)],
    }


@router.get("/audit/verification")
async def verification(request: Request, caller: IG) -> dict[str, Any]:
    async with _store(request).pool.acquire() as conn:
        result = await log.verify(conn)
    await _read(request, caller, "verification")
    return result.__dict__
