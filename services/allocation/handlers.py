"""The allocation service's use cases: load, decide, append."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from uuid import UUID, uuid4

from events import EventPayload
from events.allocation import ReviewerRegistered
from events.notification import CaseOpened
from infra.aggregates import NotFound as NotFoundMapping
from infra.aggregates import Repository
from infra.db import Connection
from infra.eventstore import Context, EventLog, EventStore, Transaction
from services.allocation import domain, settings, texts
from services.allocation.tables import POSTGRES, Tables


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def reviewer_stream(reviewer_id: UUID) -> str:
    return f"reviewer-{reviewer_id}"


def _reviewer_not_found(stream_id: str, _: Transaction) -> Exception:
    return NotFound(f"reviewer {stream_id.removeprefix('reviewer-')}")


def _case_not_found(tables: Tables) -> NotFoundMapping:
    async def why(stream_id: str, conn: Transaction) -> Exception:
        """Why a case is not here: the notification service has it but has not opened it (a 409
        naming its state), or nobody notified it (404)."""
        case_id = UUID(stream_id)
        status = await tables.not_open(conn, case_id)
        if status is not None:
            return domain.CaseNotOpen(case_id, status)
        return NotFound(f"case {case_id}")

    return why


def reviewers(store: EventLog) -> Repository[domain.Reviewer]:
    """A reviewer, on a stream of their own (reviewer_stream)."""
    return Repository(store, domain.evolve_reviewer, _reviewer_not_found)


def cases(store: EventLog, tables: Tables = POSTGRES) -> Repository[domain.CaseAllocation]:
    """A case's allocation, on the case's stream."""
    return Repository(store, domain.evolve_case, _case_not_found(tables))


# Loads and changes by id, for callers outside the handlers (the API, the consumers, the benches).


async def load_reviewer(store: EventLog, conn: Transaction, reviewer_id: UUID) -> tuple[domain.Reviewer, int]:
    return await reviewers(store).load(reviewer_stream(reviewer_id), conn=conn)


async def load_case(store: EventLog, conn: Transaction, case_id: UUID) -> tuple[domain.CaseAllocation, int]:
    return await cases(store).load(str(case_id), conn=conn)


CaseDecision = Callable[[domain.CaseAllocation], Sequence[EventPayload]]


async def change_case(
    store: EventLog, case_id: UUID, decide: CaseDecision, context: Context, conn: Transaction | None = None
) -> list[EventPayload]:
    return await cases(store).change(str(case_id), decide, context, case_id=case_id, conn=conn)


async def register_reviewer(
    store: EventLog,
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


async def command_reviewer(
    store: EventLog, reviewer_id: UUID, command: domain.ReviewerCommand, context: Context
) -> None:
    """Load the reviewer, decide the command (domain.decide_reviewer), append."""
    await reviewers(store).change(
        reviewer_stream(reviewer_id), partial(domain.decide_reviewer, command=command), context
    )


async def deactivate(
    store: EventLog, reviewer_id: UUID, reason: str, context: Context, tables: Tables = POSTGRES
) -> list[UUID]:
    """Deactivate a reviewer and, in the same transaction, return every case they hold (as reviewer or
    as supporting senior reviewer) to the front of the queue (domain.decide_return_on_deactivation).
    Holds the locks an allocation to them takes, so none is allocated to them meanwhile. The cases
    returned."""
    async with store.transaction() as conn:
        await tables.lock_reviewer(conn, reviewer_id)
        reviewer, version = await reviewers(store).load(reviewer_stream(reviewer_id), conn=conn)
        events = domain.decide_deactivation(reviewer, reason)
        if not events:
            return []
        await store.append(reviewer_stream(reviewer_id), version, events, context, conn=conn)
        returned = []
        for case_id in await tables.held_by(conn, reviewer_id):
            sealed = await tables.sealer(conn, case_id)
            if await cases(store, tables).change(
                str(case_id),
                partial(domain.decide_return_on_deactivation, reviewer=reviewer, reason=reason, seal=sealed),
                context,
                case_id=case_id,
                conn=conn,
            ):
                returned.append(case_id)
        return returned


async def allocate(
    store: EventLog,
    case_id: UUID,
    reviewer_id: UUID,
    senior_id: UUID,
    today: date,
    context: Context,
    reallocation_reason: str | None = None,
    tables: Tables = POSTGRES,
) -> list[EventPayload]:
    async with store.transaction() as conn:
        # The locks first: a reviewer deactivated meanwhile is loaded as deactivated.
        load = await tables.caseload(conn, reviewer_id)
        supported = await tables.supporting_others(conn, senior_id, case_id)
        case, version = await cases(store, tables).load(str(case_id), conn=conn)
        reviewer, _ = await reviewers(store).load(reviewer_stream(reviewer_id), conn=conn)
        senior, _ = await reviewers(store).load(reviewer_stream(senior_id), conn=conn)
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
                seal=await tables.sealer(conn, case_id),
            )
        await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)
        return events


async def reopen(
    store: EventLog,
    conn: Transaction,
    case_id: UUID,
    reason: str,
    today: date,
    context: Context,
    tables: Tables = POSTGRES,
) -> list[EventPayload]:
    """The case was reopened: restore the allocation its closure ended to the same reviewer and
    senior reviewer if they can still take it, else put the case back in the queue (domain
    decide_reopening). In the caller's transaction (the consumer's inbox)."""
    case, version = await cases(store, tables).load(str(case_id), conn=conn)
    # Nothing ended to restore (told again, or never allocated): the domain's rule; the ids are named
    # again only so that the type checker knows them set.
    if not domain.allocation_to_restore(case) or case.reviewer_id is None or case.senior_reviewer_id is None:
        return []
    reviewer, _ = await reviewers(store).load(reviewer_stream(case.reviewer_id), conn=conn)
    senior, _ = await reviewers(store).load(reviewer_stream(case.senior_reviewer_id), conn=conn)
    load = await tables.caseload(conn, reviewer.reviewer_id)
    supported = await tables.supporting_others(conn, senior.reviewer_id, case_id)
    events = domain.decide_reopening(
        case,
        reviewer,
        senior,
        load,
        today,
        settings.conflict_rule(),
        reason,
        supported,
        seal=await tables.sealer(conn, case_id),
    )
    await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)
    return events


async def queue(
    store: EventLog, conn: Transaction, opened: CaseOpened, occurred_on: date, context: Context
) -> list[EventPayload]:
    """The case was opened (notification.CaseOpened): queue it unless it is queued already
    (domain.decide_queue). In the caller's transaction (the consumer's inbox)."""
    state, version = await cases(store).find(str(opened.case_id), conn=conn)
    events = domain.decide_queue(state, opened, occurred_on)
    if events:
        await store.append(str(opened.case_id), version, events, context, case_id=opened.case_id, conn=conn)
    return events


async def declare_conflict(
    store: EventLog, case_id: UUID, user_id: str, reason: str, context: Context, tables: Tables = POSTGRES
) -> None:
    async with store.transaction() as conn:
        reviewer_id = await tables.reviewer_of(conn, user_id)
        if reviewer_id is None:
            raise domain.NotAllocatedToCaller(f"{user_id} is not a registered reviewer")
        reviewer, _ = await reviewers(store).load(reviewer_stream(reviewer_id), conn=conn)
        sealed = await tables.sealer(conn, case_id)
        await cases(store, tables).change(
            str(case_id),
            lambda c: domain.decide_conflict_declaration(c, reviewer, reason, seal=sealed),
            context,
            case_id=case_id,
            conn=conn,
        )


async def destroy_personal_data(store: EventLog, conn: Transaction, case_id: UUID, context: Context) -> None:
    """The case's retention period ended (notification.PersonalDataDestroyed): the allocation service
    destroys its own key for the case in the same transaction as it records so
    (allocation.CasePersonalDataDestroyed), and every reason sealed about the case opens no more. A
    case the service never queued has nothing sealed: only its key (if it had one) goes. In the
    caller's transaction (the consumer's inbox)."""
    try:
        await cases(store).change(
            str(case_id), domain.decide_personal_data_destruction, context, case_id=case_id, conn=conn
        )
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
        case, _ = await cases(store).load(str(case_id), conn=conn)
        rows = await conn.fetch(
            "SELECT reviewer_id, active_caseload, last_allocated_on, last_supported_on FROM reviewers"
        )
        supported = await supporting(conn)
        rule = settings.conflict_rule()
        found, seniors = [], []
        for row in rows:
            reviewer, _ = await reviewers(store).load(reviewer_stream(row["reviewer_id"]), conn=conn)
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
