"""The notification service's use cases: load a case, decide, append. Both doors (HTTP and the
partner topic) and every consumer come through here."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID, uuid4

import asyncpg

from events import Actor, EventPayload
from events.partner import PartnerNotification
from infra.aggregates import Repository
from infra.db import Connection
from infra.eventstore import ConcurrencyError, Context, EventLog, EventStore, StreamAppend, Transaction
from infra.sealing import seal as seal_bytes
from services.notification import domain
from services.notification.personal import (
    PersonalDetails,
    data_key,
    destroy_key,
    keys_of_new_cases,
    seal,
    unseal,
)
from services.notification.projections import match_value, name_and_dates

# Intake takes a transaction lock on each value duplicate detection matches on (_locked_lookup: the NHS
# number, the family name with the dates of birth and death) and on the notification id, so that two
# notifications of one person (or two sends of one id) are decided one after the other, the second
# seeing the first's case; notifications of different people are taken at once (each partition of the
# partner topic, and the HTTP door, in a transaction of its own). A case's reference number is given
# under a lock of its year (`_reference_lock`), taken only by what opens a case, after the person's;
# except in a transaction that takes many notifications (the partner consumer's batch), which takes it
# with the first one's person locks: it holds the event store's sequence from its first append to its
# commit, so a lock it took later could be held by a transaction waiting for that sequence (a
# deadlock). Behind the reference lock, the read model's unique constraint: a reference given twice
# fails the append, which is then decided again with the next number.
_REFERENCE_TAKEN = "cases_reference_key"
RETRIES = 3


@dataclass(frozen=True)
class NotificationResult:
    notification_id: UUID
    outcome: str
    case_id: UUID | None
    review_type: str | None
    focused_reasons: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    reference: str | None = None
    created: bool = True


async def take_notification(
    store: EventStore,
    conn: Connection,
    notification: PartnerNotification,
    context: Context,
    *,
    reference_first: bool = False,
) -> NotificationResult:
    """Decide what a notification is and record it, once per notification_id, in `conn`'s transaction.
    A case it opens gets the next reference of the year it was notified (today). `reference_first`:
    the year's reference lock is taken before anything is appended, whatever the outcome (for a
    transaction that takes several notifications)."""
    return await _take(store, conn, notification, context, reference_first=reference_first)


async def take_partner_notification(
    store: EventStore,
    conn: Connection,
    notification: PartnerNotification,
    context: Context,
    *,
    digest: str | None = None,
) -> None:
    """`take_notification` for the partner consumer, which applies a batch of them in one transaction
    (so the year's reference lock comes first) and answers nobody: what was recorded is not read back.
    Nor is it tried again at a savepoint of its own: a deadlock fails the consumer's transaction, which
    is tried again whole (a transient failure), and a reference taken twice cannot happen under the
    year's lock taken first (should it, the message is tried again alone, in a transaction of its own).
    `digest`: the notification's domain.content_hash, when the caller has it."""
    await _take_once(
        store, conn, notification, context, digest or domain.content_hash(notification),
        reference_first=True, read_back=False,
    )  # fmt: skip


async def take_partner_batch(
    store: EventStore, conn: Connection, batch: Sequence[tuple[PartnerNotification, Context, str]]
) -> None:
    """`take_partner_notification` of each (a notification, its context and its content_hash), in
    `conn`'s transaction, in a few statements for the whole batch rather than a few a notification:
    every lock and look-up in one, the new cases' data keys in one, the events in one with their
    projections. Where notifications of the batch share a lock (the same person, or the same id, twice)
    or one was taken before, they are taken one after the other, as `take_partner_notification` does.
    A case's data key made is durable only after `personal.sync_keys`, which the caller awaits before
    it commits."""
    asked = [(notification, await match_values(notification)) for notification, _, _ in batch]
    year = store.clock().year
    keys = [_reference_lock(year)]
    for notification, values in asked:
        keys += [f"notification:{notification.notification_id}", *values.values()]
    found = None
    if len(set(keys)) == len(keys):
        found = await _locked_lookup(conn, keys, [(n.notification_id, v) for n, v in asked], year)
    now = store.clock()
    if found is None or now.year != year or any(earlier is not None for earlier, _, _ in found):
        for notification, context, digest in batch:
            await _take_once(
                store, conn, notification, context, digest,
                reference_first=True, read_back=False, durable_key=False,
            )  # fmt: skip
        return
    # Each notification's stream: a new case's (its id just drawn), or another (a case it is the
    # same person's, or a notification's that opens none), whose key and version are read.
    drawn = []  # each notification's outcome, case id drawn, stream, and whether that stream is new
    for (notification, _, _), (_, match, _) in zip(batch, found, strict=True):
        case_id = uuid4()
        outcome = domain.classify(notification, match)
        stream = domain.intake_stream(outcome, notification, match, case_id)
        drawn.append((outcome, case_id, stream, stream == str(case_id)))
    made = await keys_of_new_cases(conn, [stream for _, _, stream, new in drawn if new])
    number = found[0][2] or 0
    parts = []
    for (notification, context, digest), (_, match, _), (outcome, case_id, stream, new) in zip(
        batch, found, drawn, strict=True
    ):
        key = made.get(stream) or await data_key(conn, stream, create=True)
        reference = None
        if outcome == "case_opened":
            number += 1
            reference = domain.case_reference(year, number)
        intake = domain.decide_intake(
            notification, match, case_id, seal(key, stream, PersonalDetails.of(notification)),
            reference=reference, notified_on=now.date(), digest=digest,
        )  # fmt: skip
        version = 0 if new else await store.stream_version(stream, conn=conn)
        parts.append(StreamAppend(stream, version, intake.events, context, intake.case_id))
    await store.append_streams(parts, occurred_at=now, conn=conn)


async def _take(
    store: EventStore,
    conn: Connection,
    notification: PartnerNotification,
    context: Context,
    *,
    reference_first: bool,
) -> NotificationResult:
    digest = domain.content_hash(notification)
    for attempt in range(1, RETRIES + 1):
        try:
            async with conn.transaction():
                result = await _take_once(
                    store, conn, notification, context, digest,
                    reference_first=reference_first, read_back=True,
                )  # fmt: skip
                assert result is not None
                return result
        except asyncpg.UniqueViolationError as taken:
            if taken.constraint_name != _REFERENCE_TAKEN or attempt == RETRIES:
                raise
        except asyncpg.DeadlockDetectedError:
            # The same person taken at once through the other door, by a transaction holding the
            # event store's sequence: this intake's locks are let go (its savepoint) and taken again.
            if attempt == RETRIES:
                raise
    raise AssertionError("unreachable")


async def _take_once(
    store: EventStore,
    conn: Connection,
    notification: PartnerNotification,
    context: Context,
    digest: str,
    *,
    reference_first: bool,
    read_back: bool,
    durable_key: bool = True,
) -> NotificationResult | None:
    values = await match_values(notification)
    locked_year = store.clock().year if reference_first else None
    first = [_reference_lock(locked_year)] if locked_year is not None else []
    # Under the locks: the notification taken already, or the same person's case.
    earlier, match, last_number = await _locked_earlier_and_match(
        conn, [*first, f"notification:{notification.notification_id}", *values.values()],
        notification.notification_id, values, locked_year,
    )  # fmt: skip
    if earlier is not None:
        owner, earlier_digest = await _ownership(conn, notification.notification_id)
        domain.decide_resend(notification, digest, owner, earlier_digest)
        return earlier
    new_case_id = uuid4()
    outcome = domain.classify(notification, match)
    stream_id = domain.intake_stream(outcome, notification, match, new_case_id)
    key = await data_key(conn, stream_id, create=True, new=stream_id == str(new_case_id), durable=durable_key)
    personal = seal(key, stream_id, PersonalDetails.of(notification))
    now = store.clock()
    reference = None
    if outcome == "case_opened":
        if now.year == locked_year:
            # Read with the match, under the year's lock taken first.
            reference = domain.case_reference(now.year, (last_number or 0) + 1)
        else:
            await _lock(conn, [_reference_lock(now.year)])
            reference = await next_reference(conn, now.year)
    intake = domain.decide_intake(
        notification, match, new_case_id, personal,
        reference=reference, notified_on=now.date(), digest=digest,
    )  # fmt: skip
    # A stream named by the case id just drawn is new; any other is read (and the append
    # checks the version either way).
    version = (
        0 if intake.stream_id == str(new_case_id) else await store.stream_version(intake.stream_id, conn=conn)
    )
    # No savepoint of the append's own: every caller undoes the whole intake on an error (`_take` at
    # its savepoint, the partner consumer's batch by its rollback).
    await store.append(
        intake.stream_id, version, intake.events, context,
        case_id=intake.case_id, occurred_at=now, conn=conn, savepoint=False,
    )  # fmt: skip
    if not read_back:
        return None
    result = await result_of(conn, notification.notification_id)
    assert result is not None
    return replace(result, created=True)


async def _lock(conn: Connection, keys: Sequence[str]) -> None:
    """Transaction locks on `keys` (each hashed to a lock number), taken in one order by everyone so
    that two intakes waiting on each other's keys cannot deadlock."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(n) FROM (SELECT DISTINCT hashtextextended(k, 0) AS n"
        " FROM unnest($1::text[]) AS k ORDER BY n) AS sorted",
        list(keys),
    )


def _reference_lock(year: int) -> str:
    return f"reference:{year}"


async def _ownership(conn: Connection, notification_id: UUID) -> tuple[str | None, str | None]:
    """The organisation a notification taken already belongs to, and the hash of its content."""
    row = await conn.fetchrow(
        "SELECT organisation, content_hash FROM notifications WHERE notification_id = $1", notification_id
    )
    return (row["organisation"], row["content_hash"]) if row else (None, None)


async def next_reference(conn: Connection, year: int) -> str:
    """The next case reference of `year`: numbered 1, 2, 3... in the order cases are opened. Read under
    the year's reference lock, from the read model every CaseOpened updates in its own transaction."""
    last: int | None = await conn.fetchval("SELECT last_number FROM case_references WHERE year = $1", year)
    return domain.case_reference(year, (last or 0) + 1)


async def notified_on(store: EventLog, conn: Transaction, case_id: UUID) -> date:
    """The day (UTC) the case's death was notified: when its first event (its intake) occurred."""
    first = await store.read_stream(str(case_id), limit=1, conn=conn)
    if not first:
        raise CaseNotFound(str(case_id))
    return first[0].occurred_at.astimezone(UTC).date()


# The case, the next reference of the year it was notified, and the day it was notified.
OpeningDecision = Callable[[domain.Case, str, date], Sequence[EventPayload]]


async def change_opening_case(
    store: EventStore, case_id: UUID, decide: OpeningDecision, context: Context
) -> list[EventPayload]:
    """A change that may open the case (confirming eligibility): decided under the reference lock of the
    year the case was notified with that year's next reference, which the decision uses if it opens
    the case, and the day it was notified, where its six-month clock starts."""
    for attempt in range(1, RETRIES + 1):
        try:
            async with store.transaction() as conn:
                case, version = await load_case(store, conn, case_id)
                notified = await notified_on(store, conn, case_id)
                await _lock(conn, [_reference_lock(notified.year)])
                reference = await next_reference(conn, notified.year)
                events = list(decide(case, reference, notified))
                await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)
                return events
        except ConcurrencyError:
            if attempt == RETRIES:
                raise
        except asyncpg.UniqueViolationError as taken:
            if taken.constraint_name != _REFERENCE_TAKEN or attempt == RETRIES:
                raise
    raise AssertionError("unreachable")


async def result_of(conn: Connection, notification_id: UUID) -> NotificationResult | None:
    row = await conn.fetchrow(
        "SELECT n.outcome, n.case_id, c.review_type, c.focused_reasons, c.flags, c.reference"
        " FROM notifications n LEFT JOIN cases c USING (case_id) WHERE n.notification_id = $1",
        notification_id,
    )
    return _result(notification_id, row)


async def _locked_earlier_and_match(
    conn: Connection, keys: Sequence[str], notification_id: UUID, values: dict[str, str], year: int | None
) -> tuple[NotificationResult | None, domain.Match | None, int | None]:
    """`_lock` on `keys`, then under the locks `result_of` the notification and its match (see below)
    (`values`: its match_values), with the last reference number given in `year` (None: none given,
    or no year asked): one round trip."""
    return (await _locked_lookup(conn, keys, [(notification_id, values)], year))[0]


async def _locked_lookup(
    conn: Connection, keys: Sequence[str], asked: Sequence[tuple[UUID, dict[str, str]]], year: int | None
) -> list[tuple[NotificationResult | None, domain.Match | None, int | None]]:
    """`_locked_earlier_and_match` of each notification asked (its id and match_values) under every one
    of `keys`: one round trip (migration 006's intake_lookup_many). A notification's match is the
    same person's case: the same NHS number; or, where the notification or the case has none, the same
    family name (case- and accent-insensitive), date of birth and date of death. Two different NHS
    numbers are two different people, whatever their names."""
    rows = await conn.fetch(
        "SELECT * FROM intake_lookup_many($1, $2, $3, $4, $5, $6)",
        list(keys),
        [notification_id for notification_id, _ in asked],
        [values.get("nhs_number") for _, values in asked],
        [values["name_and_dates"] for _, values in asked],
        ["nhs_number" in values for _, values in asked],
        year,
    )
    found = []
    for (notification_id, _), row in zip(asked, rows, strict=True):
        earlier = _result(notification_id, row) if row["outcome"] is not None else None
        match = None
        if row["by_nhs_number"] is not None:
            match = domain.Match(row["by_nhs_number"], "nhs_number")
        elif row["by_name_and_dates"] is not None:
            match = domain.Match(row["by_name_and_dates"], "name_and_dates")
        found.append((earlier, match, row["last_number"]))
    return found


def _result(notification_id: UUID, row: asyncpg.Record | None) -> NotificationResult | None:
    if row is None:
        return None
    return NotificationResult(
        notification_id=notification_id,
        outcome=row["outcome"],
        case_id=row["case_id"],
        review_type=row["review_type"],
        focused_reasons=list(row["focused_reasons"] or []),
        flags=list(row["flags"] or []),
        reference=row["reference"],
        created=False,
    )


async def match_values(notification: PartnerNotification) -> dict[str, str]:
    """What the person index holds for the notification's person, by kind of match: the NHS number's
    (where it has one), and the family name's with the dates of birth and death."""
    person = notification.person
    values = {}
    if person.nhs_number:
        values["nhs_number"] = await match_value("nhs_number", person.nhs_number)
    key = name_and_dates(person.family_name, str(person.date_of_birth), str(notification.death.date_of_death))
    values["name_and_dates"] = await match_value("name_and_dates", key)
    return values


class CaseNotFound(Exception):
    pass


def _case_not_found(stream_id: str, _: Transaction) -> Exception:
    return CaseNotFound(stream_id)


def cases(store: EventLog) -> Repository[domain.Case]:
    """A case, on its own stream."""
    return Repository(store, domain.evolve, _case_not_found)


def non_cases(store: EventLog) -> Repository[domain.NonCaseNotification]:
    """A notification that opened no case, on a stream of its own (domain.non_case_stream)."""
    return Repository(store, domain.evolve_non_case)


# The case's load and change by id, for callers outside the handlers (the API, the consumers, the
# benches).


async def load_case(store: EventLog, conn: Transaction, case_id: UUID) -> tuple[domain.Case, int]:
    return await cases(store).load(str(case_id), conn=conn)


Decision = Callable[[domain.Case], Sequence[EventPayload]]


async def change_case(
    store: EventStore, case_id: UUID, decide: Decision, context: Context, conn: Connection | None = None
) -> list[EventPayload]:
    """Load the case, decide, append with the version read (a concurrent change is a 409)."""
    return await cases(store).change(str(case_id), decide, context, case_id=case_id, conn=conn)


READ_RETRIES = 5


async def record_read(
    store: EventStore, case_id: UUID, events: Sequence[EventPayload], context: Context
) -> None:
    """Record a read of the case on its reads stream (domain.reads_stream), apart from its changes.
    Two reads at once race only for the stream's next version: the later one is appended after."""
    stream_id = domain.reads_stream(case_id)
    for attempt in range(1, READ_RETRIES + 1):
        try:
            version = await store.stream_version(stream_id)
            await store.append(stream_id, version, events, context, case_id=case_id)
            return
        except ConcurrencyError:
            if attempt == READ_RETRIES:
                raise


async def personal_details(
    store: EventStore, case_id: UUID, viewer: str, role: str, reason: str, correlation_id: str
) -> PersonalDetails:
    """Decrypt the case's personal details, recording who looked and why in the same transaction."""
    async with store.transaction() as conn:
        case, version = await load_case(store, conn, case_id)
        events = domain.decide_view(case, viewer, role, reason)
        await store.append(
            str(case_id), version, events, Context(Actor(kind="user", id=viewer, role=role), correlation_id),
            case_id=case_id, conn=conn,
        )  # fmt: skip
        return unseal(await data_key(conn, case.personal.key_id), case.personal)


async def destroy_personal_data(
    store: EventStore,
    case_id: UUID,
    retention_years: int,
    context: Context,
    retention_days: int | None = None,
) -> bool:
    """Crypto-shred a case: record it, then destroy its key, in one transaction. `retention_days`: the
    short retention of a case found not eligible, which only such a case is shredded under."""
    async with store.transaction() as conn:
        case, version = await load_case(store, conn, case_id)
        if retention_days is not None and not domain.non_case_retention_applies(case):
            return False
        events = domain.decide_destruction(case, retention_years, retention_days)
        if not events:
            return False
        await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)
        await destroy_key(conn, case.personal.key_id)
        return True


async def destroy_expired(
    store: EventStore, retention_years: int, today: date, context: Context
) -> list[UUID]:
    """End of retention: crypto-shred every case notified more than `retention_years` before today."""
    cutoff = (
        today.replace(year=today.year - retention_years) if retention_years else today + timedelta(days=1)
    )
    due = await store.pool.fetch(
        "SELECT case_id FROM cases WHERE NOT personal_destroyed AND notified_at < $1 ORDER BY notified_at",
        datetime.combine(cutoff, time.min, UTC),
    )
    destroyed = []
    for row in due:
        if await destroy_personal_data(store, row["case_id"], retention_years, context):
            destroyed.append(row["case_id"])
    return destroyed


@dataclass(frozen=True)
class NonCaseDestroyed:
    """What one sweep of the non-case retention shredded."""

    cases: list[UUID] = field(default_factory=list)  # found not eligible
    notifications: list[UUID] = field(default_factory=list)  # referred to the CDOP, or not eligible
    dead_letters: list[str] = field(default_factory=list)  # keys of sealed dead letters


async def destroy_expired_non_cases(
    store: EventStore, retention_days: int, now: datetime, context: Context
) -> NonCaseDestroyed:
    """The end of the short retention of what never became a LeDeR case, `retention_days` after it
    came: cases found not eligible (from the rejection, the case's last change), notifications
    referred to the CDOP or not eligible, and partner notifications sealed in the DLQ. Each is shredded
    like a case: recorded, then its key destroyed, in one transaction."""
    cutoff = now - timedelta(days=retention_days)
    done = NonCaseDestroyed()
    rejected = await store.pool.fetch(
        "SELECT case_id FROM cases WHERE status = 'not_eligible' AND NOT personal_destroyed"
        " AND updated_at < $1 ORDER BY updated_at",
        cutoff,
    )
    for row in rejected:
        if await destroy_personal_data(store, row["case_id"], 0, context, retention_days=retention_days):
            done.cases.append(row["case_id"])
    notifications = await store.pool.fetch(
        "SELECT notification_id FROM notifications WHERE case_id IS NULL AND NOT personal_destroyed"
        " AND received_at < $1 ORDER BY received_at",
        cutoff,
    )
    for row in notifications:
        if await destroy_non_case_notification(store, row["notification_id"], retention_days, context):
            done.notifications.append(row["notification_id"])
    dead_letters = await store.pool.fetch(
        "SELECT key_id FROM data_keys WHERE starts_with(key_id, $1) AND destroyed_at IS NULL"
        " AND created_at < $2 ORDER BY created_at",
        domain.DEAD_LETTER_KEY_PREFIX,
        cutoff,
    )
    for row in dead_letters:
        async with store.transaction() as conn:
            await destroy_key(conn, row["key_id"])
        done.dead_letters.append(row["key_id"])
    return done


async def destroy_non_case_notification(
    store: EventStore, notification_id: UUID, retention_days: int, context: Context
) -> bool:
    """Crypto-shred a notification that opened no case: NotificationPersonalDataDestroyed on its own
    stream, then its key destroyed, in one transaction."""
    stream_id = domain.non_case_stream(notification_id)
    async with store.transaction() as conn:
        state, version = await non_cases(store).find(stream_id, conn=conn)
        if state is None:
            return False
        events = domain.decide_non_case_destruction(state, retention_days)
        if not events:
            return False
        await store.append(stream_id, version, events, context, conn=conn)
        await destroy_key(conn, state.key_id)
        return True


async def seal_dead_letter(conn: Connection, raw: bytes) -> bytes:
    """A partner notification refused to the DLQ, sealed under a key of its own (destroyed when the
    non-case retention ends): the DLQ entry is the sealed value as JSON, never the notification."""
    key_id = domain.dead_letter_key_id(uuid4())
    sealed = seal_bytes(await data_key(conn, key_id, create=True), key_id, raw)
    return sealed.model_dump_json().encode()
