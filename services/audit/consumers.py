"""The audit service consumes every service's events topic (except its own, whose events it logs as it
records them) and the partner notification DLQ, so rejected notifications are accounted for too."""

import asyncio
import hashlib
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from events import Actor, Envelope
from events.audit import RejectedNotificationRecorded
from events.topics import dlq, partner_topic, service_topic
from infra.db import Connection
from infra.eventstore import Context
from infra.inbox import (
    Delivery,
    InboxConsumer,
    Unprocessable,
    envelope_order,
    read_envelope,
    validation_reasons,
)
from infra.logging import get_logger
from infra.service import Runtime
from infra.signing import KEY_ID_HEADER, SIGNATURE_HEADER
from services.audit import log, store

SYSTEM = Actor.system("audit")
SOURCES = ("notification", "allocation", "review", "governance")
logger = get_logger(__name__)


@dataclass(frozen=True)
class Logged:
    raw: bytes
    envelope: Envelope


def parse_any_envelope(raw: bytes) -> Logged:
    """Any well-formed envelope is logged, whatever its type: the log must not depend on knowing it."""
    try:
        return Logged(raw, read_envelope(raw))
    except ValidationError as exc:
        raise Unprocessable(validation_reasons(exc)) from exc


def arrival(logged: Logged, delivery: Delivery) -> log.Arrival:
    """The event to log. Its signature was checked before the record was parsed (infra.signing,
    through the inbox's verify hook): it is kept with the entry, so whoever reads the log can check
    it again."""
    signature, key_id = delivery.headers.get(SIGNATURE_HEADER), delivery.headers.get(KEY_ID_HEADER)
    signed = log.EventSignature(signature, key_id, delivery.topic) if signature and key_id else None
    return log.Arrival(logged.raw, logged.envelope, signed)


def events_of(runtime: Runtime, source: str) -> InboxConsumer[Logged]:
    async def apply(conn: Connection, logged: Logged, delivery: Delivery) -> None:
        await log.append_many(conn, [arrival(logged, delivery)])

    async def apply_batch(conn: Connection, batch: Sequence[tuple[Logged, Delivery]]) -> None:
        # A batch in three statements, not several an event: one that forks fails the batch, and
        # each event is then logged alone (the fork set aside alone).
        await log.append_many(conn, [arrival(logged, delivery) for logged, delivery in batch])

    return InboxConsumer(
        name=f"{source}-events",
        topic=service_topic(source, runtime.settings.topic_prefix),
        pool=runtime.pool,
        apply=apply,
        apply_batch=apply_batch,
        parse=parse_any_envelope,
        message_id=lambda m: str(m.envelope.event_id),
        order=envelope_order,
    )


def rejected_notifications(runtime: Runtime) -> InboxConsumer[bytes]:
    async def apply(conn: Connection, raw: bytes, delivery: Delivery) -> None:
        rejected = RejectedNotificationRecorded(
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            sha256=hashlib.sha256(raw).hexdigest(),
            reasons=delivery.headers.get("dlq_reason", "")[:10_000],
        )
        # Headers are unsigned: an over-long correlation id is cut, never a reason to set the record aside.
        correlation = delivery.headers.get("correlation_id", "")[:100] or f"dlq-{delivery.offset}"
        context = Context(SYSTEM, correlation)
        await store.record(runtime.store, conn, rejected, context)

    return InboxConsumer(
        name="partner-dlq",
        topic=dlq(partner_topic(runtime.settings.topic_prefix)),
        pool=runtime.pool,
        apply=apply,
        parse=lambda raw: raw,
        message_id=lambda raw: hashlib.sha256(raw).hexdigest(),
    )


def consumers(runtime: Runtime) -> Sequence[InboxConsumer[Any]]:
    return [*(events_of(runtime, source) for source in SOURCES), rejected_notifications(runtime)]


def gap_grace_seconds() -> float:
    return float(os.environ.get("LEDER_AUDIT_GAP_GRACE_SECONDS", "300"))


async def readiness(runtime: Runtime) -> dict[str, Any]:
    """Not ready while a gap has stayed open longer than the grace period (an event is missing)."""
    async with runtime.pool.acquire() as conn:
        open_gaps = await store.gaps(conn)
    now = datetime.now(UTC)
    stale = {
        source: ranges
        for source, ranges in open_gaps.items()
        if any(
            (now - datetime.fromisoformat(r["noticed_at"])).total_seconds() > gap_grace_seconds()
            for r in ranges
        )
    }
    if stale:
        logger.error("audit_gap_open", gaps=stale)
    return {"gaps": {"ok": not stale, "open": open_gaps}}


def tasks(runtime: Runtime) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
    every = float(os.environ.get("LEDER_AUDIT_CHECKPOINT_SECONDS", "300"))

    async def checkpoints() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                async with runtime.pool.acquire() as conn:
                    checkpoint = await log.sign_checkpoint(conn)
                logger.info(
                    "checkpoint_signed", tree_size=checkpoint.tree_size, root=checkpoint.root_hash.hex()
                )
            except Exception as exc:  # signed next time; the service goes on
                logger.error("checkpoint_failed", error=repr(exc))

    return [checkpoints]
