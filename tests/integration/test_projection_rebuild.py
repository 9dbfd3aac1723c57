"""Projections: updated with each append, and rebuilt from the event store to the same result."""

import importlib
import random
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from events import Actor, Envelope
from events.registry import EventPayload
from events.sealing import Sealed
from infra import db
from infra.db import Connection
from infra.eventstore import Context, EventStore
from infra.projections import Decoded, Foldable, Row, copy_rows, rebuild
from tests.support.events import CounterIncremented, NoteRecorded

CTX = Context(actor=Actor(kind="user", id="alice", role="lac"))


class CaseCounters:
    """A read model: per stream, the running total, the notes and the version seen."""

    name = "case_counters"
    tables: Sequence[str] = ("case_counters",)

    async def apply(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        payload = envelope.payload()
        by = payload.by if isinstance(payload, CounterIncremented) else 0
        notes = [payload.text] if isinstance(payload, NoteRecorded) else []
        await conn.execute(
            """
            INSERT INTO case_counters (stream_id, total, notes, last_version) VALUES ($1, $2, $3, $4)
            ON CONFLICT (stream_id) DO UPDATE SET total = case_counters.total + $2,
                notes = case_counters.notes || $3, last_version = $4
            """,
            envelope.stream_id,
            by,
            notes,
            envelope.stream_version,
        )


async def snapshot(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await pool.fetch("SELECT * FROM case_counters ORDER BY stream_id")]


async def test_a_projection_rebuilt_from_scratch_equals_the_live_one(database_url: str) -> None:
    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool)
        await pool.execute(
            "CREATE TABLE case_counters (stream_id text PRIMARY KEY, total int NOT NULL,"
            " notes text[] NOT NULL, last_version int NOT NULL)"
        )
        store = EventStore(pool, "test", [CaseCounters()])
        rng = random.Random(7)
        for i in range(400):
            stream = f"case-{rng.randrange(40)}"
            payload = (
                CounterIncremented(by=rng.randint(1, 9)) if rng.random() < 0.7 else NoteRecorded(text=f"n{i}")
            )
            await store.append(stream, await store.stream_version(stream), [payload], CTX)
        live = await snapshot(pool)
        assert len(live) == 40 and sum(r[1] for r in live) > 0  # type: ignore[misc]

        await pool.execute("UPDATE case_counters SET total = -1")  # a read model gone wrong
        replayed = await rebuild(store)

        assert replayed == 400
        assert await snapshot(pool) == live
    finally:
        await pool.close()


class FoldingCaseCounters(CaseCounters):
    """The same read model, folded in memory by a rebuild and written once per row."""

    name = "case_counters_folded"
    tables: Sequence[str] = ("case_counters_folded",)

    async def apply(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        await super().apply(_Renamed(conn), envelope)

    def fold(self) -> "CountersFold":
        return CountersFold()


class _Renamed:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def execute(self, query: str, *args: Any) -> str:
        return await self.conn.execute(query.replace("case_counters", "case_counters_folded"), *args)


class CountersFold:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        for envelope, payload in events:
            row = self.rows.setdefault(
                envelope.stream_id,
                {"stream_id": envelope.stream_id, "total": 0, "notes": [], "last_version": 0},
            )
            if isinstance(payload, CounterIncremented):
                row["total"] += payload.by
            if isinstance(payload, NoteRecorded):
                row["notes"].append(payload.text)
            row["last_version"] = envelope.stream_version

    async def write(self, conn: Connection) -> None:
        await copy_rows(conn, "case_counters_folded", self.rows.values())


class Counting:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.conn, name)
        if name not in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table"):
            return method

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.statements += 1
            return await method(*args, **kwargs)

        return counted


async def test_a_folding_projection_rebuilds_in_pages_with_a_few_statements_to_what_apply_builds(
    database_url: str,
) -> None:
    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool)
        for table in ("case_counters", "case_counters_folded"):
            await pool.execute(
                f"CREATE TABLE {table} (stream_id text PRIMARY KEY, total int NOT NULL,"
                " notes text[] NOT NULL, last_version int NOT NULL)"
            )
        # One projection folds, the other is replayed event by event: both rebuild to their live rows.
        store = EventStore(pool, "test", [CaseCounters(), FoldingCaseCounters()])
        rng = random.Random(11)
        for i in range(300):
            stream = f"case-{rng.randrange(30)}"
            payloads = [CounterIncremented(by=rng.randint(1, 9)), NoteRecorded(text=f"n{i}")][
                : rng.randint(1, 2)
            ]
            await store.append(stream, await store.stream_version(stream), payloads, CTX)
        events = await store.last_sequence()
        folded = "SELECT * FROM case_counters_folded ORDER BY stream_id"
        live = [tuple(r) for r in await pool.fetch(folded)]
        assert live == await snapshot(pool) and len(live) == 30

        await pool.execute("UPDATE case_counters_folded SET total = -1")
        assert await rebuild(store, [FoldingCaseCounters()], batch=64) == events
        assert [tuple(r) for r in await pool.fetch(folded)] == live

        async with pool.acquire() as conn, conn.transaction():
            counting = Counting(conn)
            assert await rebuild(store, [FoldingCaseCounters()], batch=64, conn=counting) == events  # type: ignore[arg-type]
            # TRUNCATE, a read per page and one after the last, one COPY: none per event.
            assert counting.statements == 1 + -(-events // 64) + 1 + 1
            assert [tuple(r) for r in await conn.fetch(folded)] == live

        await pool.execute("UPDATE case_counters SET total = -1; UPDATE case_counters_folded SET total = -1")
        assert await rebuild(store, batch=50) == events
        assert await snapshot(pool) == live
        assert [tuple(r) for r in await pool.fetch(folded)] == live
    finally:
        await pool.close()


def _sealed(text: str) -> Sealed:
    return Sealed(key_id=f"k-{text}", nonce="bm9uY2U=", ciphertext="Y2lwaGVy")


async def _rebuilt_equals_live(
    database_url: str, service: str, projection: Any, appends: list[tuple[str, list[Any]]]
) -> dict[str, list[str]]:
    """Appends through the store (the projection applied live, event by event), then rebuilds by
    folding: every table must hold the same rows. Returns the live rows."""
    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool, Path("services") / service / "migrations")
        store = EventStore(pool, service, [projection])
        for stream, payloads in appends:
            await store.append(stream, await store.stream_version(stream), payloads, CTX)

        async def rows() -> dict[str, list[str]]:
            return {
                t: [r[0] for r in await pool.fetch(f'SELECT t::text FROM "{t}" t ORDER BY 1')]
                for t in projection.tables
            }

        live = await rows()
        assert isinstance(projection, Foldable)
        assert await rebuild(store, batch=7) == await store.last_sequence()
        assert await rows() == live
        return live
    finally:
        await pool.close()


async def test_the_allocation_read_model_folded_equals_the_live_one_update_by_update(
    database_url: str,
) -> None:
    from events.allocation import (
        AllocationEnded,
        AllocationRestored,
        CaseAwaitingAllocation,
        CaseReallocated,
        CaseReturnedToQueue,
        CaseReviewTypeChanged,
        ReviewerAllocated,
        ReviewerConflictRecorded,
        ReviewerDeactivated,
        ReviewerReactivated,
        ReviewerRegistered,
        ReviewerTrainingRecorded,
    )
    from services.allocation.projections import AllocationProjection

    ann, sam, nobody = uuid4(), uuid4(), uuid4()
    first, second, unknown = uuid4(), uuid4(), uuid4()
    on = date(2026, 3, 2)

    def queued(case: UUID) -> CaseAwaitingAllocation:
        return CaseAwaitingAllocation(
            case_id=case, notified_on=on, deadline=date(2026, 9, 2), review_type="initial",
            focused_reasons=[], organisations_involved=["North Hospital"],
        )  # fmt: skip

    def allocated(case: UUID, day: int) -> ReviewerAllocated:
        return ReviewerAllocated(
            case_id=case, reviewer_id=ann, reviewer_user_id="ann", senior_reviewer_id=sam,
            senior_reviewer_user_id="sam", allocated_on=date(2026, 3, day), notified_on=on,
            deadline=date(2026, 9, 2), review_type="initial", focused_reasons=[],
        )  # fmt: skip

    live = await _rebuilt_equals_live(
        database_url,
        "allocation",
        AllocationProjection(),
        [
            (f"reviewer-{ann}", [
                ReviewerRegistered(reviewer_id=ann, user_id="ann", name="Ann", organisations=["A"],
                                   senior=False, capacity=3),
                ReviewerTrainingRecorded(reviewer_id=ann, completed_on=date(2026, 2, 1)),
                ReviewerTrainingRecorded(reviewer_id=ann, completed_on=date(2025, 2, 1)),  # older: kept
                ReviewerConflictRecorded(reviewer_id=ann, kind="organisation", name="South Trust"),
                ReviewerConflictRecorded(reviewer_id=ann, kind="person", name="Dr \"Quoted\" Ünal"),
                ReviewerDeactivated(reviewer_id=ann, reason="leave"),
                ReviewerReactivated(reviewer_id=ann),
            ]),
            (f"reviewer-{sam}", [
                ReviewerRegistered(reviewer_id=sam, user_id="sam", name="Sam", organisations=["A", "B"],
                                   senior=True, capacity=5),
                ReviewerDeactivated(reviewer_id=sam, reason="left"),
            ]),
            (f"reviewer-{nobody}", [ReviewerTrainingRecorded(reviewer_id=nobody, completed_on=on)]),
            (str(first), [queued(first), allocated(first, 3)]),
            (str(second), [
                queued(second),
                CaseReviewTypeChanged(case_id=second, review_type="focused", focused_reasons=["ethnicity"]),
                allocated(second, 4),
                CaseReturnedToQueue(case_id=second, reviewer_id=ann, reason=_sealed("conflict")),
                # Not allocated any more: nobody's caseload changes.
                CaseReturnedToQueue(case_id=second, reviewer_id=ann, reason=_sealed("again")),
                allocated(second, 5),
            ]),
            (str(first), [
                CaseReallocated(case_id=first, from_reviewer_id=ann, to_reviewer_id=sam, reason=_sealed("r")),
                AllocationEnded(case_id=first, reviewer_id=ann, reason="case_closed"),
                AllocationRestored(case_id=first, reviewer_id=ann, reviewer_user_id="ann",
                                   senior_reviewer_id=sam, senior_reviewer_user_id="sam",
                                   restored_on=on, reason=_sealed("reopened")),
                AllocationEnded(case_id=first, reviewer_id=None, reason="review_completed"),
            ]),
            (str(unknown), [
                allocated(unknown, 6),  # no queued row: only the reviewers' rows change
                CaseReturnedToQueue(case_id=unknown, reviewer_id=ann, reason=_sealed("x")),
                AllocationEnded(case_id=unknown, reviewer_id=sam, reason="case_closed"),
            ]),
        ],
    )  # fmt: skip
    assert len(live["reviewers"]) == 2 and len(live["allocation_cases"]) == 2
    assert sum("Quoted" in row and "South Trust" in row for row in live["reviewers"]) == 1


async def test_the_review_read_model_folded_equals_the_live_one_update_by_update(database_url: str) -> None:
    from events.review import (
        LapseInCareRecorded,
        ReviewCompleted,
        ReviewerAccessEnded,
        ReviewerAccessRestored,
        ReviewEscalatedToFocused,
        ReviewHandedOver,
        ReviewPaused,
        ReviewReopened,
        ReviewResumed,
        ReviewReturnedForRework,
        ReviewStarted,
        ReviewSubmittedForQA,
    )
    from services.review.projections import ReviewsProjection

    case, other = uuid4(), uuid4()
    lapse = {"what": _sealed("w"), "where": _sealed("h"), "organisation": "GP", "contribution": "unknown"}
    access = {"reviewer_user_id": "ann", "senior_reviewer_user_id": "sam"}
    started = {
        "review_type": "focused", "focused_reasons": ["ethnicity"], "reviewer_user_id": "ann",
        "senior_reviewer_user_id": "sam", "notified_on": date(2026, 1, 5), "deadline": date(2026, 7, 5),
    }  # fmt: skip
    payloads = [
        ReviewStarted.model_validate({"case_id": case, **started}),
        ReviewEscalatedToFocused.model_validate(
            {"case_id": case, "reasons": ["ethnicity", "detained_within_5_years", "detained_within_5_years"]}
        ),
        LapseInCareRecorded.model_validate({"case_id": case, **lapse}),
        LapseInCareRecorded.model_validate({"case_id": case, **lapse}),
        ReviewPaused.model_validate(
            {"case_id": case, "paused_on": date(2026, 2, 1), "reason": "police_investigation"}
        ),
        ReviewResumed.model_validate({"case_id": case, "resumed_on": date(2026, 2, 11)}),
        ReviewPaused.model_validate(
            {"case_id": case, "paused_on": date(2026, 3, 1), "reason": "police_investigation"}
        ),
        ReviewResumed.model_validate({"case_id": case, "resumed_on": date(2026, 3, 4)}),
        ReviewSubmittedForQA.model_validate({"case_id": case, "submitted_on": date(2026, 3, 10)}),
        ReviewReturnedForRework.model_validate({"case_id": case, "comments": _sealed("more")}),
        ReviewSubmittedForQA.model_validate({"case_id": case, "submitted_on": date(2026, 3, 20)}),
        ReviewCompleted.model_validate({"case_id": case, "completed_on": date(2026, 4, 1)}),
        ReviewReopened.model_validate(
            {"case_id": case, "reason": _sealed("new evidence"), "reopened_on": date(2026, 4, 9)}
        ),
        ReviewerAccessEnded.model_validate({"case_id": case, **access, "reason": "case_closed"}),
        ReviewerAccessRestored.model_validate({"case_id": case, **access, "because": "allocation_restored"}),
        ReviewHandedOver.model_validate(
            {
                "case_id": case,
                "from_reviewer_user_id": "ann",
                "reviewer_user_id": "cat",
                "senior_reviewer_user_id": "sol",
            }
        ),
    ]
    live = await _rebuilt_equals_live(
        database_url,
        "review",
        ReviewsProjection(),
        [
            (str(case), payloads),
            (
                str(other),
                [LapseInCareRecorded.model_validate({"case_id": other, **lapse})],
            ),  # no review: no row
        ],
    )
    assert len(live["reviews"]) == 1


async def test_the_notification_read_models_folded_equal_the_live_ones_update_by_update(
    database_url: str,
) -> None:
    """Every event type the notification folds read, on cases that exist and one that does not, people
    with and without an NHS number (one named beyond ASCII), a key destroyed before the rebuild, and
    pages that split a case's events: the folds (type by type, a sealed person's three fields) build
    the rows `apply` built event by event."""
    from events.notification import (
        CaseAllocationEnded,
        CaseAllocationRecorded,
        CaseClosureRecorded,
        CaseEscalatedToFocused,
        CaseFacts,
        CaseOpened,
        CaseReopeningRecorded,
        DuplicateNotificationLinked,
        EligibilityRejected,
        EligibilityToConfirm,
        EthnicityRecorded,
        NotificationNotEligible,
        NotificationPersonalDataDestroyed,
        PersonalDataDestroyed,
        PersonalDetailsViewed,
        ReferredToChildDeathOverviewPanel,
    )
    from events.partner import NextOfKin
    from services.notification.personal import PersonalDetails, data_key, destroy_key, seal
    from services.notification.projections import projections

    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool, Path("services") / "notification" / "migrations")
        store = EventStore(pool, "notification", projections())

        async def sealed(key_id: UUID, nhs_number: str | None, family_name: str) -> Sealed:
            details = PersonalDetails(
                nhs_number=nhs_number, given_name="Ann", family_name=family_name,
                date_of_birth=date(1961, 4, 2), postcode="BS1 4ND", notifier_name="Dr Lee",
                notifier_email="lee@example.nhs.uk", notifier_phone=None,
                next_of_kin=NextOfKin(
                    name="Bo", relationship="son", email="bo@example.com", involve_family=True
                ),
                cause_of_death=None, concerns_details=None,
            )  # fmt: skip
            async with pool.acquire() as conn:
                return seal(await data_key(conn, str(key_id), create=True), str(key_id), details)

        def facts(ethnicity: str, organisation: str = "North Hospital") -> CaseFacts:
            return CaseFacts(
                age_at_death=40, sex="female", ethnicity=ethnicity, learning_disability=True,
                learning_disability_level="mild", autism=None, accommodation_type="supported_living",
                opted_out_of_secondary_use=False, date_of_death=date(2026, 3, 1), place_of_death="home",
                place_of_death_organisation=None, gp_practice_code=None,
                organisations_involved=["North Hospital", "Cedars Surgery"],
                notifier_organisation=organisation, notifier_role="hospital", involve_family=True,
            )  # fmt: skip

        first, second, gone, nobody = uuid4(), uuid4(), uuid4(), uuid4()
        n1, n2, n3, n4, n5, n6 = (uuid4() for _ in range(6))

        def opened(case: UUID, notification: UUID, person: Sealed, reference: str | None) -> CaseOpened:
            return CaseOpened(
                case_id=case, notification_id=notification, reference=reference, notified_on=date(2026, 3, 2),
                review_type="initial", focused_reasons=["learning"], flags=[], facts=facts("A"),
                personal=person, content_hash="h-" + str(notification),
            )  # fmt: skip

        allocated = CaseAllocationRecorded(
            case_id=first, reviewer_user_id="ann", senior_reviewer_user_id="sam"
        )
        appends: list[tuple[str, list[Any]]] = [
            (str(first), [
                opened(first, n1, await sealed(first, "9434765919", "Ünal-Smith"), "LDR-2026-00001"),
                EthnicityRecorded(case_id=first, ethnicity="Z"),
                EthnicityRecorded(case_id=first, ethnicity="99"),
                CaseEscalatedToFocused(case_id=first, reasons=["ethnicity", "learning", "ethnicity"],
                                       source="ethnicity_recorded"),
                allocated,
                CaseAllocationEnded(case_id=first, reviewer_user_id="ann", senior_reviewer_user_id="sam",
                                    reason="conflict_declared"),
                allocated,
                CaseAllocationEnded(case_id=first, reviewer_user_id="ann", senior_reviewer_user_id="sam",
                                    reason="review_completed"),
                PersonalDetailsViewed(case_id=first, viewer="ann", role="reviewer", reason="review"),
                DuplicateNotificationLinked(case_id=first, notification_id=n2, matched_on="nhs_number",
                                            notifier_organisation="GP", notifier_role="gp",
                                            personal=await sealed(first, "9434765919", "Unal Smith")),
                CaseClosureRecorded(case_id=first, closed_on=date(2026, 9, 1)),
                CaseReopeningRecorded(case_id=first, reason="new evidence"),
                EthnicityRecorded(case_id=first, ethnicity="B"),
            ]),
            (str(second), [
                EligibilityToConfirm(case_id=second, notification_id=n3, unknown=["autism"],
                                     focused_reasons=[], flags=["ethnicity_not_stated"], facts=facts("Z"),
                                     personal=await sealed(second, None, "  Jones  Price ")),
                # Confirmed: the same case opened, with its reference.
                opened(second, n3, await sealed(second, None, "Jones Price"), "LDR-2026-00002"),
                EligibilityRejected(case_id=second, reason="not a learning disability"),
            ]),
            (str(gone), [
                opened(gone, n4, await sealed(gone, "4010232137", "Gone"), "LDR-2025-00007"),
                CaseAllocationRecorded(case_id=gone, reviewer_user_id="cat", senior_reviewer_user_id="sol"),
                CaseAllocationEnded(case_id=gone, reviewer_user_id="cat", senior_reviewer_user_id="sol",
                                    reason="returned_to_queue"),  # back in the queue: nobody has it
                PersonalDataDestroyed(case_id=gone, reason="retention_period_ended", retention_years=7),
            ]),
            (f"notification-{n5}", [
                ReferredToChildDeathOverviewPanel(notification_id=n5, facts=facts("C", "Child Hospital"),
                                                  personal=await sealed(n5, None, "Young")),
                NotificationPersonalDataDestroyed(notification_id=n5, reason="retention_period_ended",
                                                  retention_days=90),
            ]),
            (f"notification-{n6}", [
                NotificationNotEligible(notification_id=n6, reason="over 18 without", facts=facts("A"),
                                        personal=await sealed(n6, None, "Old")),
                NotificationPersonalDataDestroyed(notification_id=uuid4(), reason="retention_period_ended",
                                                  retention_days=90),  # of no notification
            ]),
            (str(nobody), [
                CaseAllocationRecorded(case_id=nobody, reviewer_user_id="ann", senior_reviewer_user_id=None),
                EthnicityRecorded(case_id=nobody, ethnicity="Z"),
                PersonalDataDestroyed(case_id=nobody, reason="retention_period_ended", retention_years=7),
            ]),
        ]  # fmt: skip
        for stream, payloads in appends:
            await store.append(stream, await store.stream_version(stream), payloads, CTX)
        async with pool.acquire() as conn:
            await destroy_key(conn, str(gone))  # shredded: the rebuild cannot unseal its person any more

        async def rows() -> dict[str, list[str]]:
            return {
                t: [r[0] for r in await pool.fetch(f'SELECT t::text FROM "{t}" t ORDER BY 1')]
                for p in store.projections
                for t in p.tables
            }

        live = await rows()
        assert [len(live[t]) for t in ("cases", "notifications", "case_references")] == [3, 6, 2]
        # The first case by its NHS number and both names (the duplicate's is not indexed), none of the rest.
        assert len(live["person_index"]) == 2 and all(str(first) in row for row in live["person_index"])
        for batch in (1, 4, 5000):
            await pool.execute("UPDATE cases SET status = 'x'; DELETE FROM person_index")
            assert await rebuild(store, batch=batch) == await store.last_sequence()
            assert await rows() == live, batch
    finally:
        await pool.close()


@pytest.mark.parametrize("service", ["notification", "allocation", "review", "governance"])
def test_a_folding_projection_names_every_event_type_its_module_handles(service: str) -> None:
    """A rebuild decodes only the event types the projections name (`event_types`): a type one of them
    handles but does not name would be left out of the rebuilt rows. Each module imports exactly the
    payloads its projections handle, so the two must agree."""
    module = importlib.import_module(f"services.{service}.projections")
    imported = {
        value.event_type
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, EventPayload) and value is not EventPayload
    }
    projections = module.projections()
    assert all(isinstance(p, Foldable) for p in projections)
    assert set().union(*(p.event_types for p in projections)) == imported
