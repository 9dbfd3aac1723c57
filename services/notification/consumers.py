"""What the notification service consumes: partner notifications (the Kafka door), allocations (who
may see a case's personal details: from an allocation until it ends), review escalations (the case's
review type), and the QA panel's closing and the LAC's reopening of a case (its status, the same here
as everywhere)."""

from collections.abc import Sequence
from typing import Any

from events import Actor, Envelope, EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseReallocated,
    CaseReturnedToQueue,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
)
from events.governance import CaseClosed, CaseReopened
from events.notification import AllocationEndReason
from events.partner import InvalidNotification, PartnerNotification, parse_notification
from events.registry import payload_class
from events.review import ReviewEscalatedToFocused
from events.topics import partner_topic, service_topic
from infra.db import Connection
from infra.eventstore import Context, EventStore
from infra.inbox import Delivery, InboxConsumer, Unprocessable, envelope_order, envelope_parser, payload_of
from infra.service import Runtime
from services.notification import domain, handlers
from services.notification.personal import sync_keys

SYSTEM = Actor.system("notification")


def parse_partner(raw: bytes) -> PartnerNotification:
    try:
        return parse_notification(raw)
    except InvalidNotification as invalid:
        raise Unprocessable([e.as_dict() for e in invalid.errors]) from invalid


def partner_notifications(store: EventStore, topic: str) -> InboxConsumer[PartnerNotification]:
    async def seal(raw: bytes, _: Delivery) -> bytes:
        # A refused notification is still a death notified: sealed, it leaves the DLQ with its key.
        async with store.transaction() as conn:
            return await handlers.seal_dead_letter(conn, raw)

    # Each notification's content hash, made once for its message id and its intake (by the object's
    # identity, the object held so the identity is not another's; a batch's worth at most).
    digests: dict[int, tuple[PartnerNotification, str]] = {}

    def message_id(notification: PartnerNotification) -> str:
        known = digests.get(id(notification))
        if known is None or known[0] is not notification:
            if len(digests) >= 1000:
                digests.clear()
            known = digests[id(notification)] = (notification, domain.content_hash(notification))
        return f"{notification.notification_id}:{known[1]}"

    def context_and_digest(notification: PartnerNotification, delivery: Delivery) -> tuple[Context, str]:
        # The partner's own system is the actor; its Kafka key says which notification it sent.
        actor = Actor(kind="partner", id=notification.notifier.organisation[:200], role="partner_system")
        # The header is unsigned, the sender's word: cut to what an envelope holds, never a refusal.
        correlation = delivery.headers.get("correlation_id", "")[:100] or str(notification.notification_id)
        known = digests.pop(id(notification), None)
        digest = known[1] if known is not None and known[0] is notification else None
        return Context(actor, correlation), digest or domain.content_hash(notification)

    async def apply(conn: Connection, notification: PartnerNotification, delivery: Delivery) -> None:
        context, digest = context_and_digest(notification, delivery)
        try:
            await handlers.take_partner_notification(store, conn, notification, context, digest=digest)
        except domain.NotificationIdConflict as conflict:
            # Never dropped in silence: the partner's new notification waits in the DLQ, saying why.
            raise Unprocessable(
                [{"field": "notification_id", "type": conflict.code, "message": conflict.detail}]
            ) from conflict

    async def apply_batch(conn: Connection, batch: Sequence[tuple[PartnerNotification, Delivery]]) -> None:
        # A few statements for the whole batch. Each case's new data key is written to the key manager
        # as it is made, and all of them made durable at once before the batch commits. Should any
        # notification fail, each is applied alone (by `apply`), where a refusal is told.
        await handlers.take_partner_batch(
            store, conn, [(n, *context_and_digest(n, delivery)) for n, delivery in batch]
        )
        await sync_keys()

    return InboxConsumer(
        name="partner-notifications", topic=topic, pool=store.pool, apply=apply, apply_batch=apply_batch,
        parse=parse_partner,
        # The same notification delivered again is applied once; the same id with other content is
        # another message, which the intake refuses (to the DLQ).
        message_id=message_id, seal_dead_letter=seal,
    )  # fmt: skip


# The other services' events this one acts on (every other one, allocation.CaseAwaitingAllocation
# for each case opened, say, is taken as read without decoding its payload).
ACTS_ON: tuple[type[EventPayload], ...] = (
    ReviewerAllocated, AllocationRestored, ConflictOfInterestDeclared, CaseReturnedToQueue, CaseReallocated,
    AllocationEnded, ReviewEscalatedToFocused, CaseClosed, CaseReopened,
)  # fmt: skip


def case_events(store: EventStore, topic: str, name: str) -> InboxConsumer[Envelope]:
    async def apply(conn: Connection, envelope: Envelope, _: Delivery) -> None:
        if not issubclass(payload_class(envelope.event_type), ACTS_ON):
            return
        event = payload_of(envelope)
        context = Context.caused_by(envelope, SYSTEM)
        if isinstance(event, ReviewerAllocated | AllocationRestored):
            reviewer, senior = event.reviewer_user_id, event.senior_reviewer_user_id
            await _on_case(
                store, conn, event.case_id, lambda c: domain.decide_allocation(c, reviewer, senior), context
            )
        elif (ended := _allocation_end(event)) is not None:
            case_id, why = ended
            await _on_case(store, conn, case_id, lambda c: domain.decide_allocation_end(c, why), context)
        elif isinstance(event, ReviewEscalatedToFocused):
            reasons = event.reasons
            await _on_case(
                store, conn, event.case_id, lambda c: domain.decide_review_escalation(c, reasons), context
            )
        elif isinstance(event, CaseClosed):
            closed_on = event.closed_on
            await _on_case(store, conn, event.case_id, lambda c: domain.decide_closure(c, closed_on), context)
        elif isinstance(event, CaseReopened):
            reason = event.reason
            await _on_case(store, conn, event.case_id, lambda c: domain.decide_reopening(c, reason), context)

    return InboxConsumer(
        name=name, topic=topic, pool=store.pool, apply=apply,
        parse=envelope_parser(lambda cls: issubclass(cls, ACTS_ON)),
        message_id=lambda e: str(e.event_id), order=envelope_order,
    )  # fmt: skip


def _allocation_end(event: object) -> tuple[Any, AllocationEndReason] | None:
    """The case whose allocation `event` ends, and why; None if it ends none."""
    match event:
        case ConflictOfInterestDeclared():
            return event.case_id, "conflict_declared"
        case CaseReturnedToQueue():
            return event.case_id, "returned_to_queue"
        case CaseReallocated():
            return event.case_id, "reallocated"
        case AllocationEnded():
            return event.case_id, event.reason
    return None


async def _on_case(
    store: EventStore, conn: Connection, case_id: Any, decide: handlers.Decision, context: Context
) -> None:
    try:
        await handlers.change_case(store, case_id, decide, context, conn=conn)
    except handlers.CaseNotFound as missing:
        raise Unprocessable(f"no case {missing} in the notification service") from missing
    except domain.DomainError as broken:
        raise Unprocessable([{"field": "case_id", "type": broken.code, "message": broken.detail}]) from broken


def consumers(runtime: Runtime) -> Sequence[InboxConsumer[Any]]:
    prefix = runtime.settings.topic_prefix
    return [
        partner_notifications(runtime.store, partner_topic(prefix)),
        case_events(runtime.store, service_topic("allocation", prefix), "allocation-events"),
        case_events(runtime.store, service_topic("review", prefix), "review-events"),
        case_events(runtime.store, service_topic("governance", prefix), "governance-events"),
    ]
