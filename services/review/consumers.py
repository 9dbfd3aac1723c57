"""What the review service consumes: allocations (start or hand over a review, and the end of an
allocation, which ends the reviewer's access, and its restoring on reopening) and reviewers' names,
cases' references, escalations and the end of their retention (the review's key is destroyed) from the
notification service, and the QA panel's decisions and case reopenings from the governance service."""

from collections.abc import Sequence
from contextlib import suppress
from typing import Any
from uuid import UUID

from events import Actor, Envelope
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseReturnedToQueue,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
    ReviewerRegistered,
)
from events.governance import CaseReopened, ReviewApprovedByQA, ReviewReturnedByQA
from events.notification import CaseEscalatedToFocused, CaseOpened, PersonalDataDestroyed
from events.review import AccessEndReason, ReviewEscalatedToFocused
from events.topics import service_topic
from infra.db import Connection
from infra.eventstore import Context, EventStore
from infra.inbox import Delivery, InboxConsumer, Unprocessable, envelope_order, parse_envelope
from infra.sealing import KeyDestroyed
from infra.service import Runtime
from services.review import domain, handlers, texts

SYSTEM = Actor.system("review")


def case_events(runtime: Runtime, topic: str, name: str) -> InboxConsumer[Envelope]:
    store = runtime.store

    async def apply(conn: Connection, envelope: Envelope, _: Delivery) -> None:
        event = envelope.payload()
        context = Context.caused_by(envelope, SYSTEM)
        if isinstance(event, ReviewerAllocated):
            await handlers.start_or_hand_over(store, conn, event, context)
            # The case's key is made as its review starts, in this transaction: a request the review
            # then refuses (a write by someone it is not allocated to, say) never makes it, and so
            # writes nothing. (A key destroyed already stays destroyed.)
            with suppress(KeyDestroyed):
                await texts.sealer(runtime.keys, conn, event.case_id)
        elif isinstance(event, ConflictOfInterestDeclared | CaseReturnedToQueue | AllocationEnded):
            # Whatever returned the case to the queue (a conflict, the reviewer's deactivation, a
            # reopening that could not go back to them): the allocation has ended, and access with it.
            reason: AccessEndReason = (
                "conflict_declared"
                if isinstance(event, ConflictOfInterestDeclared)
                else "returned_to_queue"
                if isinstance(event, CaseReturnedToQueue)
                else event.reason
            )
            await _on_review(
                store,
                conn,
                event.case_id,
                lambda r: domain.decide_access_end(r, reason),
                context,
                missing_ok=True,
            )
        elif isinstance(event, AllocationRestored):
            restored = event

            def restore(review: domain.Review) -> list[Any]:
                return domain.decide_allocation(
                    review, restored.reviewer_user_id, restored.senior_reviewer_user_id, restored=True
                )

            await _on_review(store, conn, event.case_id, restore, context, missing_ok=True)
        elif isinstance(event, CaseOpened):
            await handlers.remember_reference(conn, event.case_id, event.reference)
        elif isinstance(event, ReviewerRegistered):
            await handlers.remember_name(conn, event.user_id, event.name)
        elif isinstance(event, CaseEscalatedToFocused) and event.source != "review":
            reasons = [r for r in event.reasons]

            def escalate(review: domain.Review) -> list[Any]:
                new = [r for r in reasons if r not in review.focused_reasons]
                return (
                    [
                        # The reasons say why (from a controlled list): no free text to seal.
                        ReviewEscalatedToFocused(case_id=review.case_id, reasons=new)
                    ]
                    if new
                    else []
                )

            await _on_review(store, conn, event.case_id, escalate, context, missing_ok=True)
        elif isinstance(event, ReviewApprovedByQA | ReviewReturnedByQA):
            approved = isinstance(event, ReviewApprovedByQA)
            comments = None
            if isinstance(event, ReviewReturnedByQA):  # the reviewer reads them: sealed like the review
                comments = (await _sealer(runtime, conn, event.case_id))(event.comments)
            today = runtime.today()
            await _on_review(
                store,
                conn,
                event.case_id,
                lambda r: domain.decide_qa_outcome(r, approved, comments, today),
                context,
            )
        elif isinstance(event, CaseReopened):  # the completed review goes back to its reviewer
            why = (await _sealer(runtime, conn, event.case_id))(event.reason)
            today = runtime.today()
            await _on_review(
                store, conn, event.case_id, lambda r: domain.decide_reopen(r, why, today), context
            )

        elif isinstance(event, PersonalDataDestroyed):
            await handlers.destroy_personal_data(store, runtime.keys, conn, event.case_id, context)

    return InboxConsumer(
        name=name,
        topic=topic,
        pool=store.pool,
        apply=apply,
        parse=parse_envelope,
        message_id=lambda e: str(e.event_id),
        order=envelope_order,
    )


async def _sealer(runtime: Runtime, conn: Connection, case_id: UUID) -> texts.Sealer:
    try:
        return await texts.sealer(runtime.keys, conn, case_id)
    except KeyDestroyed as gone:
        raise Unprocessable(
            [
                {
                    "field": "case_id",
                    "type": "personal_data_destroyed",
                    "message": f"case {case_id}'s key is destroyed",
                }
            ]
        ) from gone


async def _on_review(
    store: EventStore,
    conn: Connection,
    case_id: Any,
    decide: handlers.Decision,
    context: Context,
    missing_ok: bool = False,
) -> None:
    try:
        await handlers.change_review(store, case_id, decide, context, conn=conn)
    except handlers.ReviewNotFound as missing:
        if not missing_ok:  # an escalation before allocation: the review will start with the case's type
            raise Unprocessable(f"no review of case {missing}") from missing
    except domain.DomainError as broken:
        raise Unprocessable([{"field": "case_id", "type": broken.code, "message": broken.detail}]) from broken


def consumers(runtime: Runtime) -> Sequence[InboxConsumer[Any]]:
    prefix = runtime.settings.topic_prefix
    return [
        case_events(runtime, service_topic(source, prefix), f"{source}-events")
        for source in ("allocation", "notification", "governance")
    ]
