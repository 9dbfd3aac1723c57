"""The review service through its real doors: allocations from the allocation topic, the reviewer's
API, events on leder.review.events, and the six-month clock."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope, EventPayload
from events.allocation import ReviewerAllocated
from events.topics import service_topic
from infra import db
from infra.settings import database_url_for
from services.allocation.domain import review_deadline
from services.notification.app import definition as notification_service
from services.review.app import definition
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic

NOW = datetime(2026, 11, 26, 10, tzinfo=UTC)


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: NOW
        yield running


def envelope(source: str, case_id: UUID, payload: EventPayload, version: int = 1) -> Envelope:
    return Envelope(
        event_id=uuid4(),
        event_type=payload.event_type,
        schema_version=payload.schema_version,
        stream_id=str(case_id),
        case_id=case_id,
        stream_version=version,
        source=source,
        source_sequence=version,
        occurred_at=NOW,
        recorded_at=NOW,
        actor=Actor.system(source),
        correlation_id="corr",
        data=payload.model_dump(mode="json"),
    )


async def allocate(
    svc: RunningService,
    bootstrap: str,
    prefix: str,
    case_id: UUID,
    reviewer: str = "rae",
    review_type: str = "initial",
    notified_on: date = date(2026, 10, 1),
    version: int = 1,
) -> None:
    allocated = ReviewerAllocated(
        case_id=case_id,
        reviewer_id=uuid4(),
        reviewer_user_id=reviewer,
        senior_reviewer_id=uuid4(),
        senior_reviewer_user_id="sam",
        allocated_on=NOW.date(),
        notified_on=notified_on,
        deadline=review_deadline(notified_on),
        review_type=review_type,  # type: ignore[arg-type]
        focused_reasons=[] if review_type == "initial" else ["concerns_about_care"],
    )
    message = envelope("allocation", case_id, allocated, version)
    await publish_raw(
        bootstrap, service_topic("allocation", prefix), [(message.kafka_key, message.canonical())]
    )

    async def has_reviewer() -> bool:
        response = await svc.client.get(f"/reviews/{case_id}", headers=svc.headers("lac"))
        return response.status_code == 200 and response.json()["reviewer_user_id"] == reviewer

    await eventually(has_reviewer, timeout=60)


async def post(
    svc: RunningService,
    case_id: UUID,
    path: str,
    body: dict[str, Any] | None = None,
    who: str = "rae",
    role: str = "reviewer",
) -> Any:
    return await svc.client.post(
        f"/reviews/{case_id}/{path}", json=body or {}, headers=svc.headers(role, who)
    )


MINIMUM = [
    ("contacts", {"party": "family", "status": "completed", "on": "2026-10-20"}),
    ("contacts", {"party": "gp", "status": "completed", "on": "2026-10-21"}),
    (
        "contacts",
        {
            "party": "professional",
            "status": "completed",
            "on": "2026-10-22",
            "role": "learning disability nurse",
            "organisation": "Sirona Care",
        },
    ),
    ("records", {"source": "GP", "received_on": "2026-10-23"}),
    ("pen-portrait", {"text": "Jo loved Bristol Rovers and his Saturday swim."}),
    ("family-involvement", {"step": "invited_to_comment", "on": "2026-10-24"}),
    (
        "care-judgements",
        {"phase": "final admission", "grade": 3, "rationale": "slow recognition of deterioration"},
    ),
    ("good-practice", {"text": "hospital passport used", "themes": ["reasonable_adjustments_missing"]}),
    ("learning", {"text": "sepsis screening", "themes": ["sepsis"]}),
    ("recommendations", {"what": "use the sepsis tool on ward 4", "organisation": "Southmead Hospital"}),
    ("cause-of-death", {"cause": "sepsis", "preventable_or_treatable": True, "age_at_death": 62}),
]
FOCUSED_MORE = [
    (
        "contacts",
        {
            "party": "professional",
            "status": "completed",
            "on": "2026-10-25",
            "role": "ward sister",
            "organisation": "Southmead Hospital",
        },
    ),
    ("records", {"source": "Southmead Hospital", "received_on": "2026-10-26"}),
]


@pytest.mark.parametrize("review_type", ["initial", "focused"])
async def test_the_whole_happy_path_from_allocation_to_submission_publishes_each_event(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str, review_type: str
) -> None:
    case_id = uuid4()
    await allocate(svc, kafka_bootstrap, topic_prefix, case_id, review_type=review_type)
    steps = MINIMUM + (FOCUSED_MORE if review_type == "focused" else [])
    for path, body in steps:
        response = await post(svc, case_id, path, body)
        assert response.status_code == 201, (path, response.text)
    submitted = await post(svc, case_id, "submission")
    assert submitted.status_code == 201, submitted.text

    store = svc.runtime.store
    assert await store.stream_version(str(case_id)) >= len(steps) + 2
    # Everything recorded: the review's stream and the reads of it (the LAC's, waiting for the start).
    recorded = await store.stream_version(str(case_id)) + await store.stream_version(f"reads-{case_id}")
    records = await read_topic(kafka_bootstrap, service_topic("review", topic_prefix), at_least=recorded)
    published = [Envelope.from_bytes(r.value) for r in records]
    assert all(e.case_id == case_id for e in published)
    # The review's own stream, in order; the reads of it (review.ReviewRead) are a stream of their own.
    written = [e for e in published if e.stream_id == str(case_id)]
    types = [e.event_type for e in sorted(written, key=lambda e: e.stream_version)]
    assert types[0] == "review.ReviewStarted" and types[-1] == "review.ReviewSubmittedForQA"
    assert types.count("review.ContactRecorded") == (4 if review_type == "focused" else 3)
    assert {
        "review.PenPortraitWritten",
        "review.CareJudged",
        "review.CauseOfDeathRecorded",
        "review.RecommendationRecorded",
        "review.LearningRecorded",
    } <= set(types)
    started = next(e for e in published if e.event_type == "review.ReviewStarted")
    assert started.data["review_type"] == review_type
    assert started.causation_id is not None  # caused by the allocation event


async def test_submission_with_nothing_recorded_is_refused_naming_everything_missing(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    await allocate(svc, kafka_bootstrap, topic_prefix, case_id)
    refused = await post(svc, case_id, "submission")
    assert refused.status_code == 422
    assert refused.json()["missing"] == [
        "family_or_carer_contact",
        "gp_contact_or_gp_records",
        "other_professional_contact",
        "pen_portrait",
        "quality_of_care_judgement",
    ]


async def test_a_paused_review_refuses_writes_and_the_deadline_report_counts_the_pause_both_ways(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    await allocate(svc, kafka_bootstrap, topic_prefix, case_id, notified_on=date(2026, 6, 1))
    svc.runtime.clock = lambda: datetime(2026, 10, 1, tzinfo=UTC)
    assert (
        await post(svc, case_id, "pause", {"reason": "coroners_investigation_or_inquest"})
    ).status_code == 201
    refused = await post(svc, case_id, "pen-portrait", {"text": "x"})
    assert refused.status_code == 409 and refused.json()["code"] == "review_paused"
    assert (await post(svc, case_id, "notes", {"text": "inquest listed for January"})).status_code == 201

    svc.runtime.clock = lambda: datetime(2026, 12, 10, tzinfo=UTC)  # 70 days paused so far, past the deadline
    [row] = (await svc.client.get("/reviews/overdue", headers=svc.headers("lac"))).json()["reviews"]
    assert (row["deadline"], row["paused_days"], row["deadline_excluding_pauses"]) == (
        "2026-12-01",
        70,
        "2027-02-09",
    )
    assert (row["overdue"], row["overdue_excluding_pauses"]) == (True, False)

    svc.runtime.clock = lambda: datetime(2026, 12, 11, tzinfo=UTC)
    assert (await post(svc, case_id, "resumption")).status_code == 201
    svc.runtime.clock = lambda: datetime(2027, 1, 1, tzinfo=UTC)
    [row] = (
        await svc.client.get("/reviews", params={"due_before": "2027-03-01"}, headers=svc.headers("lac"))
    ).json()["reviews"]
    assert (row["paused_days"], row["deadline_excluding_pauses"]) == (71, "2027-02-10")
    assert (
        await svc.client.get("/reviews", params={"due_before": "2026-11-01"}, headers=svc.headers("lac"))
    ).json()["reviews"] == []


WRITES = [
    "contacts",
    "records",
    "pen-portrait",
    "family-involvement",
    "care-judgements",
    "lapses-in-care",
    "good-practice",
    "learning",
    "recommendations",
    "cause-of-death",
    "safeguarding-referrals",
    "pause",
    "resumption",
    "notes",
    "submission",
]
VALID = dict(MINIMUM) | {
    "lapses-in-care": {"what": "x", "where": "y", "organisation": "z", "contribution": "unknown"},
    "safeguarding-referrals": {"to": "Bristol safeguarding", "on": "2026-10-01", "why": "concern"},
    "pause": {"reason": "police_investigation"},
    "notes": {"text": "n"},
}


async def test_another_reviewer_or_one_reallocated_away_gets_403_on_every_write(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    await allocate(svc, kafka_bootstrap, topic_prefix, case_id, reviewer="rae")
    assert (await post(svc, case_id, "notes", {"text": "mine"})).status_code == 201
    for path in WRITES:
        response = await post(svc, case_id, path, VALID.get(path), who="ria")
        assert response.status_code == 403, (path, response.text)
    await allocate(svc, kafka_bootstrap, topic_prefix, case_id, reviewer="ria", version=2)
    for path in WRITES:
        response = await post(svc, case_id, path, VALID.get(path), who="rae")
        assert response.status_code == 403, (path, response.text)
    review = (await svc.client.get(f"/reviews/{case_id}", headers=svc.headers("reviewer", "ria"))).json()
    assert [h["event_type"] for h in review["history"]][:3] == [
        "review.ReviewStarted",
        "review.NoteAdded",
        "review.ReviewHandedOver",
    ]  # the history went with it
    assert (
        await svc.client.get(f"/reviews/{case_id}", headers=svc.headers("reviewer", "rae"))
    ).status_code == 403
    assert (
        await svc.client.get(f"/reviews/{case_id}", headers=svc.headers("senior_reviewer", "sam"))
    ).status_code == 200


async def test_deadline_events_fire_once_each_also_across_a_restart_of_the_service(
    database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()

    async def milestones(svc: RunningService) -> list[str]:
        events = await svc.runtime.store.read_stream(str(case_id))
        return [
            e.event_type + (f":{e.data['months']}" if "months" in e.data else "")
            for e in events
            if "Deadline" in e.event_type or "Overdue" in e.event_type
        ]

    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as svc:
        # Notified eight months ago (real time): the scheduler, run at start, finds all three due.
        notified = date(2026, 3, 20) if datetime.now(UTC).date() >= date(2026, 11, 21) else date(2025, 1, 1)
        await allocate(svc, kafka_bootstrap, topic_prefix, case_id, notified_on=notified)
        from infra.eventstore import Context
        from services.review.handlers import record_deadlines

        await record_deadlines(svc.runtime.store, svc.runtime.today(), Context(Actor.system("test")))
        first = await eventually(lambda: milestones(svc))
        assert first == [
            "review.ReviewDeadlineApproaching:4",
            "review.ReviewDeadlineApproaching:5",
            "review.ReviewOverdue",
        ]
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as restarted:
        # The scheduler runs at start; it and a further pass add nothing.
        from infra.eventstore import Context
        from services.review.handlers import record_deadlines

        assert (
            await record_deadlines(
                restarted.runtime.store, restarted.runtime.today(), Context(Actor.system("test"))
            )
            == 0
        )
        assert await milestones(restarted) == first


async def test_a_lapse_in_care_escalates_the_review_and_the_notification_service_shows_the_case_focused(
    pg_server_url: str, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    notification_db = database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
    await db.ensure_database(notification_db)
    try:
        async with (
            running_service(notification_service, notification_db, kafka_bootstrap, topic_prefix) as notify,
            running_service(definition, database_url, kafka_bootstrap, topic_prefix) as review,
        ):
            opened = (
                await notify.client.post("/notifications", json=notification(), headers=notify.headers("lac"))
            ).json()
            assert opened["review_type"] == "initial"
            case_id = UUID(opened["case_id"])
            await allocate(review, kafka_bootstrap, topic_prefix, case_id)
            lapse = await post(
                review,
                case_id,
                "lapses-in-care",
                {
                    "what": "deterioration not escalated",
                    "where": "ward 4",
                    "organisation": "Southmead Hospital",
                    "contribution": "contributed",
                },
            )
            assert lapse.json()["events"] == ["review.LapseInCareRecorded", "review.ReviewEscalatedToFocused"]

            async def focused_in_notification() -> bool:
                case = (await notify.client.get(f"/cases/{case_id}", headers=notify.headers("lac"))).json()
                return case["review_type"] == "focused" and case["focused_reasons"] == ["lapse_in_care"]

            await eventually(focused_in_notification, timeout=60)
    finally:
        await db.drop_database(notification_db)
