"""What the allocation service consumes: opened and escalated cases from the notification service;
completed reviews and closed cases, which end an allocation; reopened cases, which restore it (or
queue the case again); the end of a case's retention, which destroys the service's key for it."""

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from events import Actor, Envelope
from events.allocation import CaseAwaitingAllocation
from events.calendar import review_deadline
from events.governance import CaseClosed, CaseReopened
from events.notification import (
    CaseEscalatedToFocused,
    CaseOpened,
    EligibilityRejected,
    EligibilityToConfirm,
    PersonalDataDestroyed,
)
from events.review import ReviewCompleted
from events.topics import service_topic
from infra.db import Connection
from infra.eventstore import Context, EventStore
from infra.inbox import Delivery, InboxConsumer, Unprocessable, envelope_order, parse_envelope
from infra.service import Runtime
from services.allocation import domain, handlers
from services.allocation.projections import record_case_not_open, record_opened_case

SYSTEM = Actor.system("allocation")


def case_events(
    store: EventStore, topic: str, name: str, today: Callable[[], date] = date.today
) -> InboxConsumer[Envelope]:
    """`today`: the service's day (the runtime's clock), for the rules a reopened case is decided by."""

    async def apply(conn: Connection, envelope: Envelope, _: Delivery) -> None:
        event = envelope.payload()
        context = Context.caused_by(envelope, SYSTEM)
        if isinstance(event, CaseOpened):
            await _queue(store, conn, envelope, event, context)
        elif isinstance(event, EligibilityToConfirm):
            await record_case_not_open(conn, event.case_id, "eligibility_to_confirm")
        elif isinstance(event, EligibilityRejected):
            await record_case_not_open(conn, event.case_id, "not_eligible")
        elif isinstance(event, CaseEscalatedToFocused):
            reasons = list(event.reasons)
            await _on_case(
                store,
                conn,
                event.case_id,
                context,
                lambda c: domain.decide_review_type(c, "focused", reasons),
            )
        elif isinstance(event, ReviewCompleted):
            await _on_case(
                store, conn, event.case_id, context, lambda c: domain.decide_end(c, "review_completed")
            )
        elif isinstance(event, CaseClosed):
            await _on_case(store, conn, event.case_id, context, lambda c: domain.decide_end(c, "case_closed"))
        elif isinstance(event, PersonalDataDestroyed):
            await handlers.destroy_personal_data(store, conn, event.case_id, context)
        elif isinstance(event, CaseReopened):
            try:
                await handlers.reopen(store, conn, event.case_id, event.reason, today(), context)
            except handlers.NotFound as missing:
                raise Unprocessable(f"no {missing.what} in the allocation service") from missing
            except domain.CaseNotOpen as not_open:
                raise Unprocessable(
                    [{"field": "case_id", "type": not_open.code, "message": not_open.detail}]
                ) from not_open

    return InboxConsumer(
        name=name,
        topic=topic,
        pool=store.pool,
        apply=apply,
        parse=parse_envelope,
        message_id=lambda e: str(e.event_id),
        order=envelope_order,
    )


async def _queue(
    store: EventStore, conn: Connection, envelope: Envelope, event: CaseOpened, context: Context
) -> None:
    await record_opened_case(conn, event.case_id, event.reference, event.facts.place_of_death)
    if await store.stream_version(str(event.case_id), conn=conn):
        return  # already queued
    # The six-month clock starts when the death was notified, which for a case opened when the LAC
    # confirmed its eligibility is before this event (events from before notified_on have none).
    notified_on = event.notified_on or envelope.occurred_at.date()
    waiting = CaseAwaitingAllocation(
        case_id=event.case_id,
        notified_on=notified_on,
        deadline=review_deadline(notified_on),
        review_type=event.review_type,
        focused_reasons=event.focused_reasons,
        organisations_involved=domain.organisations_involved(event.facts),
    )
    await store.append(str(event.case_id), 0, [waiting], context, case_id=event.case_id, conn=conn)


async def _on_case(
    store: EventStore, conn: Connection, case_id: Any, context: Context, decide: handlers.CaseDecision
) -> None:
    try:
        await handlers.change_case(store, case_id, decide, context, conn=conn)
    except handlers.NotFound as missing:
        raise Unprocessable(f"no {missing.what} in the allocation service") from missing
    except domain.CaseNotOpen as not_open:
        raise Unprocessable(
            [{"field": "case_id", "type": not_open.code, "message": not_open.detail}]
        ) from not_open


def consumers(runtime: Runtime) -> Sequence[InboxConsumer[Any]]:
    prefix = runtime.settings.topic_prefix
    return [
        case_events(runtime.store, service_topic(source, prefix), f"{source}-events", runtime.today)
        for source in ("notification", "review", "governance")
    ]
