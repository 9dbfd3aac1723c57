"""The allocation service's use cases: load, decide, append."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from uuid import UUID, uuid4

from events import EventPayload
from events.allocation import ReviewerRegistered
from events.notification import CaseOpened
from infra import aggregates
from infra.db import Connection
from infra.eventstore import Context, EventLog, EventStore, Transaction
from services.allocation import domain, settings, texts


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def reviewer_stream(reviewer_id: UUID) -> str:
    return f"reviewer-{reviewer_id}"


async def load_reviewer(store: EventLog, conn: Transaction, reviewer_id: UUID) -> tuple[domain.Reviewer, int]:
    state, version = await aggregates.load(
        store, reviewer_stream(reviewer_id), domain.evolve_reviewer, conn=conn
    )
    if state is None:
        raise NotFound(f"reviewer {reviewer_id}")
    return state, version


async def load_case(store: EventLog, conn: Transaction, case_id: UUID) -> tuple[domain.CaseAllocation, int]:
    state, version = await aggregates.load(store, str(case_id), domain.evolve_case, conn=conn)
    if state is None:
        raise await _missing_case(conn, case_id)
    return state, version


async def _missing_case(conn: Connection, case_id: UUID) -> Exception:
    """Why a case is not here: the notification service has it but has not opened it (a 409 naming
    its state), or nobody notified it (404)."""
    status = await conn.fetchval("SELECT status FROM cases_not_open WHERE case_id = $1", case_id)
    if status is not None:
        return domain.CaseNotOpen(case_id, status)
    return NotFound(f"case {case_id}")


async def register_reviewer(
    store: EventStore,
    context: Context,
    user_id: str,
    name: str,
    organisations: list[str],
    senior: bool,
    capacity: int,
) -> UUID:
    reviewer_id = uuid4()
    registered = ReviewerRegistered(
        reviewer_id=reviewer_id,
        user_id=user_id,
        name=name,
        organisations=organisations,
        senior=senior,
        capacity=capacity,
    )
    await store.append(reviewer_stream(reviewer_id), 0, [registered], context)
    return reviewer_id


ReviewerDecision = Callable[[domain.Reviewer], Sequence[EventPayload]]


async def change_reviewer(
    store: EventStore, reviewer_id: UUID, decide: ReviewerDecision, context: Context
) -> None:
    try:
        await aggregates.change(store, reviewer_stream(reviewer_id), domain.evolve_reviewer, decide, context)
    except aggregates.StreamNotFound as missing:
        raise NotFound(f"reviewer {reviewer_id}") from missing


async def command_reviewer(
    store: EventStore, reviewer_id: UUID, command: domain.ReviewerCommand, context: Context
) -> None:
    """Load the reviewer, decide the command (domain.decide_reviewer), append."""
    await change_reviewer(store, reviewer_id, partial(domain.decide_reviewer, command=command), context)


async def deactivate(store: EventStore, reviewer_id: UUID, reason: str, context: Context) -> list[UUID]:
    """Deactivate a reviewer and, in the same transaction, return every case they hold (as reviewer or
    as supporting senior reviewer) to the front of the queue (domain.decide_return_on_deactivation).
    Holds the locks an allocation to them takes, so none is allocated to them meanwhile. The cases
    returned."""
    async with store.transaction() as conn:
        await _lock_caseload(conn, reviewer_id)
        await _lock_support(conn, reviewer_id)
        reviewer, version = await load_reviewer(store, conn, reviewer_id)
        events = domain.decide_deactivation(reviewer, reason)
        if not events:
            return []
        await store.append(reviewer_stream(reviewer_id), version, events, context, conn=conn)
        held = await conn.fetch(
            "SELECT case_id FROM allocation_cases WHERE status = 'allocated'"
            " AND (reviewer_id = $1 OR senior_reviewer_id = $1) ORDER BY case_id",
            reviewer_id,
        )
        returned = []
        for row in held:
            sealed = await texts.sealer(conn, row["case_id"])
            if await change_case(
                store,
                row["case_id"],
                partial(domain.decide_return_on_deactivation, reviewer=reviewer, reason=reason, seal=sealed),
                context,
                conn=conn,
            ):
                returned.append(row["case_id"])
        return returned


async def _lock_caseload(conn: Connection, reviewer_id: UUID) -> None:
    # Allocations to one reviewer are serialised, so two cannot both take their last free place; and
    # with their deactivation, so none is allocated to them as they are deactivated.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"caseload-{reviewer_id}")


async def _lock_support(conn: Connection, senior_id: UUID) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"supporting-{senior_id}")


async def _caseload(conn: Connection, reviewer_id: UUID) -> int:
    await _lock_caseload(conn, reviewer_id)
    load: int | None = await conn.fetchval(
        "SELECT active_caseload FROM reviewers WHERE reviewer_id = $1", reviewer_id
    )
    return load or 0


async def _supporting_others(conn: Connection, senior_id: UUID, case_id: UUID) -> int:
    """The cases other than `case_id` that `senior_id` supports now. Serialised per senior reviewer
    like the caseload, so two allocations cannot both take their last place of support."""
    await _lock_support(conn, senior_id)
    count: int = await conn.fetchval(
        "SELECT count(*) FROM allocation_cases WHERE status = 'allocated' AND senior_reviewer_id = $1"
        " AND case_id <> $2",
        senior_id,
        case_id,
    )
    return count


async def allocate(
    store: EventStore,
    case_id: UUID,
    reviewer_id: UUID,
    senior_id: UUID,
    today: date,
    context: Context,
    reallocation_reason: str | None = None,
) -> list[EventPayload]:
    async with store.transaction() as conn:
        # The locks first: a reviewer deactivated meanwhile is loaded as deactivated.
        load = await _caseload(conn, reviewer_id)
        supported = await _supporting_others(conn, senior_id, case_id)
        case, version = await load_case(store, conn, case_id)
        reviewer, _ = await load_reviewer(store, conn, reviewer_id)
        senior, _ = await load_reviewer(store, conn, senior_id)
        rule = settings.conflict_rule()
        if reallocation_reason is None:
            events = domain.decide_allocation(case, reviewer, senior, load, today, rule, supported)
        else:
            events = domain.decide_reallocation(
                case,
                reviewer,
                senior,
                load,
                today,
                rule,
                reallocation_reason,
                supported,
                seal=await texts.sealer(conn, case_id),
            )
        await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)
        return events


async def reopen(
    store: EventStore, conn: Connection, case_id: UUID, reason: str, today: date, context: Context
) -> list[EventPayload]:
    """The case was reopened: restore the allocation its closure ended to the same reviewer and
    senior reviewer if they can still take it, else put the case back in the queue (domain
    decide_reopening). In the caller's transaction (the consumer's inbox)."""
    case, version = await load_case(store, conn, case_id)
    # Nothing ended to restore (told again, or never allocated): the domain's rule; the ids are named
    # again only so that the type checker knows them set.
    if not domain.allocation_to_restore(case) or case.reviewer_id is None or case.senior_reviewer_id is None:
        return []
    reviewer, _ = await load_reviewer(store, conn, case.reviewer_id)
    senior, _ = await load_reviewer(store, conn, case.senior_reviewer_id)
    load = await _caseload(conn, reviewer.reviewer_id)
    supported = await _supporting_others(conn, senior.reviewer_id, case_id)
    events = domain.decide_reopening(
        case,
        reviewer,
        senior,
        load,
        today,
        settings.conflict_rule(),
        reason,
        supported,
        seal=await texts.sealer(conn, case_id),
    )
    await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)
    return events


async def queue(
    store: EventStore, conn: Connection, opened: CaseOpened, occurred_on: date, context: Context
) -> list[EventPayload]:
    """The case was opened (notification.CaseOpened): queue it unless it is queued already
    (domain.decide_queue). In the caller's transaction (the consumer's inbox)."""
    state, version = await aggregates.load(store, str(opened.case_id), domain.evolve_case, conn=conn)
    events = domain.decide_queue(state, opened, occurred_on)
    if events:
        await store.append(str(opened.case_id), version, events, context, case_id=opened.case_id, conn=conn)
    return events


CaseDecision = Callable[[domain.CaseAllocation], Sequence[EventPayload]]


async def change_case(
    store: EventStore, case_id: UUID, decide: CaseDecision, context: Context, conn: Connection | None = None
) -> list[EventPayload]:
    try:
        return await aggregates.change(
            store, str(case_id), domain.evolve_case, decide, context, case_id=case_id, conn=conn
        )
    except aggregates.StreamNotFound as missing:
        if conn is not None:
            raise await _missing_case(conn, case_id) from missing
        async with store.pool.acquire() as own:
            raise await _missing_case(own, case_id) from missing


async def declare_conflict(
    store: EventStore, case_id: UUID, user_id: str, reason: str, context: Context
) -> None:
    async with store.transaction() as conn:
        reviewer_id = await conn.fetchval("SELECT reviewer_id FROM reviewers WHERE user_id = $1", user_id)
        if reviewer_id is None:
            raise domain.NotAllocatedToCaller(f"{user_id} is not a registered reviewer")
        reviewer, _ = await load_reviewer(store, conn, reviewer_id)
        sealed = await texts.sealer(conn, case_id)
        await change_case(
            store,
            case_id,
            lambda c: domain.decide_conflict_declaration(c, reviewer, reason, seal=sealed),
            context,
            conn=conn,
        )


async def destroy_personal_data(store: EventStore, conn: Connection, case_id: UUID, context: Context) -> None:
    """The case's retention period ended (notification.PersonalDataDestroyed): the allocation service
    destroys its own key for the case in the same transaction as it records so
    (allocation.CasePersonalDataDestroyed), and every reason sealed about the case opens no more. A
    case the service never queued has nothing sealed: only its key (if it had one) goes. In the
    caller's transaction (the consumer's inbox)."""
    try:
        await change_case(store, case_id, domain.decide_personal_data_destruction, context, conn=conn)
    except (NotFound, domain.CaseNotOpen):
        pass
    # Last, as DataKeys.destroy asks: should the key manager fail, nothing of this is committed.
    await texts.keys().destroy(conn, texts.key_id(case_id))


SUPPORTING = (
    "SELECT senior_reviewer_id, count(*) AS supporting FROM allocation_cases"
    " WHERE status = 'allocated' AND senior_reviewer_id IS NOT NULL GROUP BY senior_reviewer_id"
)


async def supporting(conn: Connection) -> dict[UUID, int]:
    """Per senior reviewer, the cases they currently support (an allocation naming them that has not
    ended, been returned or moved on)."""
    return {r["senior_reviewer_id"]: r["supporting"] for r in await conn.fetch(SUPPORTING)}


@dataclass(frozen=True)
class Suggested:
    reviewers: list[domain.Suggestion]
    seniors: list[domain.SeniorCandidate]
    pairs: list[domain.Pair]


async def suggestions(store: EventStore, case_id: UUID, today: date) -> Suggested:
    async with store.pool.acquire() as conn:
        case, _ = await load_case(store, conn, case_id)
        rows = await conn.fetch(
            "SELECT reviewer_id, active_caseload, last_allocated_on, last_supported_on FROM reviewers"
        )
        supported = await supporting(conn)
        rule = settings.conflict_rule()
        found, seniors = [], []
        for row in rows:
            reviewer, _ = await load_reviewer(store, conn, row["reviewer_id"])
            support = supported.get(reviewer.reviewer_id, 0) if reviewer.senior else 0
            found.append(
                domain.Suggestion(
                    reviewer,
                    row["active_caseload"],
                    row["last_allocated_on"],
                    domain.exclusions(case, reviewer, row["active_caseload"], today, rule),
                    supporting=support,
                )
            )
            if reviewer.senior:
                seniors.append(
                    domain.SeniorCandidate(
                        reviewer,
                        support,
                        row["last_supported_on"],
                        domain.senior_exclusions(case, reviewer, today, rule, support),
                    )
                )
    return Suggested(domain.rank(found), domain.rank_seniors(seniors), domain.suggest_pairs(found, seniors))
