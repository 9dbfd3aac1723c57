"""The allocation service through its real doors: cases from the notification topic, the LAC's API,
and allocation events on leder.allocation.events."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope
from events.notification import (
    CaseFacts,
    CaseOpened,
    EligibilityRejected,
    EligibilityToConfirm,
    SealedPersonalData,
)
from events.partner import PlaceOfDeath
from events.topics import service_topic
from infra.projections import rebuild
from services.allocation import domain
from services.allocation.app import definition
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic

TODAY = date(2026, 11, 26)


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: datetime(2026, 11, 26, 10, tzinfo=UTC)
        yield running


def opened_envelope(
    case_id: UUID,
    organisations: list[str],
    occurred: datetime,
    reference: str | None = None,
    place_of_death: PlaceOfDeath = "hospital",
    notifier_organisation: str = "GP",
    notified_on: date | None = None,
) -> Envelope:
    facts = CaseFacts(
        age_at_death=62,
        sex="male",
        ethnicity="A",
        learning_disability=True,
        learning_disability_level="severe",
        autism=False,
        accommodation_type="residential_care",
        opted_out_of_secondary_use=False,
        date_of_death=date(2026, 9, 1),
        place_of_death=place_of_death,
        place_of_death_organisation=None,
        gp_practice_code=None,
        organisations_involved=organisations,
        notifier_organisation=notifier_organisation,
        notifier_role="gp",
        involve_family=True,
    )
    payload = CaseOpened(
        case_id=case_id,
        notification_id=uuid4(),
        notified_on=notified_on,
        reference=reference,
        review_type="initial",
        focused_reasons=[],
        flags=[],
        facts=facts,
        personal=SealedPersonalData(key_id="k", nonce="n", ciphertext="c"),
    )
    return Envelope(
        event_id=uuid4(),
        event_type=payload.event_type,
        schema_version=1,
        stream_id=str(case_id),
        case_id=case_id,
        stream_version=1,
        source="notification",
        source_sequence=1,
        occurred_at=occurred,
        recorded_at=occurred,
        actor=Actor.system("notification"),
        correlation_id="c",
        data=payload.model_dump(mode="json"),
    )


async def open_cases(
    svc: RunningService, bootstrap: str, prefix: str, *days_ago: int, organisations: list[str] | None = None
) -> list[str]:
    ids = [uuid4() for _ in days_ago]
    envelopes = [
        opened_envelope(
            i, organisations or ["Southmead Hospital"], datetime(2026, 11, 26, tzinfo=UTC) - timedelta(days=d)
        )
        for i, d in zip(ids, days_ago, strict=True)
    ]
    await publish_raw(
        bootstrap, service_topic("notification", prefix), [(e.kafka_key, e.canonical()) for e in envelopes]
    )

    async def queued() -> bool:
        return len(await queue(svc)) >= len(ids)

    await eventually(queued, timeout=60)
    return [str(i) for i in ids]


async def queue(svc: RunningService) -> list[dict[str, Any]]:
    response = await svc.client.get("/allocation-queue", headers=svc.headers("lac"))
    assert response.status_code == 200, response.text
    return response.json()["cases"]  # type: ignore[no-any-return]


async def register(
    svc: RunningService,
    name: str,
    *,
    senior: bool = False,
    capacity: int = 3,
    organisations: tuple[str, ...] = ("Sirona Care",),
    trained_on: date | None = date(2026, 1, 10),
) -> str:
    response = await svc.client.post(
        "/reviewers",
        headers=svc.headers("lac"),
        json={
            "user_id": name.lower(),
            "name": name,
            "organisations": list(organisations),
            "senior": senior,
            "capacity": capacity,
        },
    )
    assert response.status_code == 201, response.text
    reviewer_id: str = response.json()["reviewer_id"]
    if trained_on:
        trained = await svc.client.post(
            f"/reviewers/{reviewer_id}/training",
            headers=svc.headers("lac"),
            json={"completed_on": trained_on.isoformat()},
        )
        assert trained.status_code == 200, trained.text
    return reviewer_id


async def allocate(svc: RunningService, case_id: str, reviewer_id: str, senior_id: str) -> Any:
    return await svc.client.post(
        f"/cases/{case_id}/allocation",
        headers=svc.headers("lac"),
        json={"reviewer_id": reviewer_id, "senior_reviewer_id": senior_id},
    )


async def test_an_opened_case_is_queued_and_allocating_it_publishes_reviewer_allocated(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    older, newer = await open_cases(svc, kafka_bootstrap, topic_prefix, 20, 3)
    waiting = await queue(svc)
    assert [c["case_id"] for c in waiting] == [older, newer]  # oldest first
    assert (waiting[0]["days_waiting"], waiting[0]["deadline"]) == (20, "2027-05-06")

    rae, sam = await register(svc, "Rae"), await register(svc, "Sam", senior=True)
    response = await allocate(svc, older, rae, sam)
    assert response.status_code == 201, response.text
    assert [c["case_id"] for c in await queue(svc)] == [newer]
    # Two cases queued, two reviewers registered and trained, one allocation.
    records = await read_topic(kafka_bootstrap, service_topic("allocation", topic_prefix), at_least=7)
    allocated = [Envelope.from_bytes(r.value) for r in records]
    allocated = [e for e in allocated if e.event_type == "allocation.ReviewerAllocated"]
    assert [
        (str(e.case_id), e.data["reviewer_user_id"], e.data["senior_reviewer_user_id"]) for e in allocated
    ] == [(older, "rae", "sam")]
    reviewers = {
        r["name"]: r
        for r in (await svc.client.get("/reviewers", headers=svc.headers("lac"))).json()["reviewers"]
    }
    assert reviewers["Rae"]["active_caseload"] == 1 and reviewers["Rae"]["can_take_a_case_today"] is True


@pytest.mark.parametrize(
    "rule",
    [
        "case_not_waiting",
        "reviewer_inactive",
        "training_missing",
        "training_expired",
        "conflict_of_interest",
        "at_capacity",
        "same_person",
        "not_senior",
    ],
)
async def test_each_refusal_answers_409_naming_the_rule_and_writes_nothing(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str, rule: str
) -> None:
    [case_id, other] = await open_cases(svc, kafka_bootstrap, topic_prefix, 5, 4)
    sam = await register(svc, "Sam", senior=True)
    rae = await register(
        svc,
        "Rae",
        capacity=1,
        trained_on={"training_expired": date(2025, 10, 1), "training_missing": None}.get(
            rule, date(2026, 1, 10)
        ),
        organisations=("Southmead Hospital",) if rule == "conflict_of_interest" else ("Sirona Care",),
    )
    senior = sam
    if rule == "case_not_waiting":
        assert (await allocate(svc, case_id, rae, sam)).status_code == 201
        rae = await register(svc, "Ria")
    elif rule == "reviewer_inactive":
        await svc.client.post(
            f"/reviewers/{rae}/deactivation", headers=svc.headers("lac"), json={"reason": "leave"}
        )
    elif rule == "at_capacity":
        assert (await allocate(svc, other, rae, sam)).status_code == 201
    elif rule == "same_person":
        senior = rae = sam
    elif rule == "not_senior":
        senior = await register(svc, "Sid")
    before = await svc.runtime.store.last_sequence()

    response = await allocate(svc, case_id, rae, senior)

    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == rule and problem["violations"][0]["code"] == rule
    assert response.headers["content-type"] == "application/problem+json"
    assert await svc.runtime.store.last_sequence() == before


async def test_training_that_expires_between_two_allocations_allows_the_first_and_refuses_the_second(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    first, second = await open_cases(svc, kafka_bootstrap, topic_prefix, 10, 9)
    rae = await register(svc, "Rae", trained_on=date(2025, 11, 26))  # the anniversary is today
    sam = await register(svc, "Sam", senior=True)
    assert (await allocate(svc, first, rae, sam)).status_code == 201
    svc.runtime.clock = lambda: datetime(2026, 11, 27, 9, tzinfo=UTC)  # a day later: older than 12 months
    refused = await allocate(svc, second, rae, sam)
    assert refused.status_code == 409 and refused.json()["code"] == "training_expired"


async def test_a_declared_conflict_puts_the_case_at_the_front_of_the_queue_and_blocks_that_reviewer(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    oldest, case_id = await open_cases(svc, kafka_bootstrap, topic_prefix, 30, 2)
    rae, sam, ria = (
        await register(svc, "Rae"),
        await register(svc, "Sam", senior=True),
        await register(svc, "Ria"),
    )
    assert (await allocate(svc, case_id, rae, sam)).status_code == 201
    not_theirs = await svc.client.post(
        f"/cases/{case_id}/conflict-declaration",
        headers=svc.headers("reviewer", "ria"),
        json={"reason": "not mine"},
    )
    assert not_theirs.status_code == 403
    declared = await svc.client.post(
        f"/cases/{case_id}/conflict-declaration",
        headers=svc.headers("reviewer", "rae"),
        json={"reason": "I supported him at Brunswick"},
    )
    assert declared.status_code == 200, declared.text

    waiting = await queue(svc)
    assert [c["case_id"] for c in waiting] == [case_id, oldest]
    assert waiting[0]["returned_to_queue"] is True
    assert waiting[0]["returned_because"] == "the reviewer declared a conflict of interest"
    again = await allocate(svc, case_id, rae, sam)
    assert again.status_code == 409 and again.json()["code"] == "conflict_of_interest"
    assert (await allocate(svc, case_id, ria, sam)).status_code == 201
    caseloads = {
        r["name"]: r["active_caseload"]
        for r in (await svc.client.get("/reviewers", headers=svc.headers("lac"))).json()["reviewers"]
    }
    assert caseloads == {"Rae": 0, "Ria": 1, "Sam": 0}


async def test_two_lacs_allocating_the_same_case_at_once_one_wins_and_the_other_gets_409(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    [case_id] = await open_cases(svc, kafka_bootstrap, topic_prefix, 1)
    rae, ria, sam = (
        await register(svc, "Rae"),
        await register(svc, "Ria"),
        await register(svc, "Sam", senior=True),
    )
    for round_ in range(3):
        results = await asyncio.gather(allocate(svc, case_id, rae, sam), allocate(svc, case_id, ria, sam))
        statuses = sorted(r.status_code for r in results)
        assert statuses == [201, 409], [r.text for r in results]
        loser = next(r for r in results if r.status_code == 409).json()
        assert loser["code"] in ("concurrent_change", "case_not_waiting")
        allocated = [
            e
            for e in await svc.runtime.store.read_stream(case_id)
            if e.event_type == "allocation.ReviewerAllocated"
        ]
        assert len(allocated) == round_ + 1  # one allocation per round, never two
        # Put it back for the next round: the winner declares a conflict.
        winner = allocated[-1].data["reviewer_user_id"]
        await svc.client.post(
            f"/cases/{case_id}/conflict-declaration",
            headers=svc.headers("reviewer", winner),
            json={"reason": "for the test"},
        )
        if winner.startswith("rae"):
            rae = await register(svc, f"Rae{round_}")
        else:
            ria = await register(svc, f"Ria{round_}")


async def test_suggested_reviewers_never_offer_a_conflicted_untrained_inactive_or_full_reviewer(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    [case_id, other] = await open_cases(
        svc, kafka_bootstrap, topic_prefix, 3, 2, organisations=["Southmead Hospital"]
    )
    sam = await register(svc, "Sam", senior=True, capacity=5)
    good = await register(svc, "Good", capacity=4)
    await register(svc, "Conflicted", organisations=("Southmead Hospital",))
    await register(svc, "Untrained", trained_on=None)
    inactive = await register(svc, "Inactive")
    await svc.client.post(
        f"/reviewers/{inactive}/deactivation", headers=svc.headers("lac"), json={"reason": "left"}
    )
    full = await register(svc, "Full", capacity=1)
    assert (await allocate(svc, other, full, sam)).status_code == 201

    response = await svc.client.get(f"/cases/{case_id}/suggested-reviewers", headers=svc.headers("lac"))
    suggestions = response.json()["suggestions"]
    eligible = [s["name"] for s in suggestions if s["eligible"]]
    assert eligible == ["Good", "Sam"]  # both idle and never allocated: by name
    excluded = {
        s["name"]: [e["code"] for e in s["excluded_because"]] for s in suggestions if not s["eligible"]
    }
    assert excluded == {
        "Conflicted": ["conflict_of_interest"],
        "Untrained": ["training_missing"],
        "Inactive": ["reviewer_inactive"],
        "Full": ["at_capacity"],
    }
    assert good in [s["reviewer_id"] for s in suggestions]


async def test_the_queue_shows_each_case_by_its_reference_with_what_the_lac_needs_to_choose(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    older, newer = uuid4(), uuid4()
    envelopes = [
        opened_envelope(
            older, ["Southmead Hospital"], datetime(2026, 11, 6, tzinfo=UTC), "LDR-2026-00041", "home"
        ),
        opened_envelope(
            newer, ["Southmead Hospital"], datetime(2026, 11, 23, tzinfo=UTC)
        ),  # before references
    ]
    await publish_raw(
        kafka_bootstrap,
        service_topic("notification", topic_prefix),
        [(e.kafka_key, e.canonical()) for e in envelopes],
    )

    async def both_queued() -> bool:
        return len(await queue(svc)) == 2

    await eventually(both_queued, timeout=60)
    first, second = await queue(svc)
    assert first == {
        "case_id": str(older),
        "reference": "LDR-2026-00041",
        "notified_on": "2026-11-06",
        "deadline": "2027-05-06",
        "review_type": "initial",
        "focused_reasons": [],
        "place_of_death": "home",
        "days_waiting": 20,
        "days_to_deadline": 161,
        "returned_to_queue": False,
        "returned_because": None,
    }
    assert (second["case_id"], second["reference"], second["place_of_death"]) == (
        str(newer),
        None,
        "hospital",
    )

    suggested = await svc.client.get(f"/cases/{older}/suggested-reviewers", headers=svc.headers("lac"))
    assert suggested.json()["reference"] == "LDR-2026-00041"
    # A rebuild of the projections (from this service's own events) keeps what CaseOpened told it.
    await rebuild(svc.runtime.store)
    assert await queue(svc) == [first, second]


async def test_suggested_pairs_rank_seniors_by_the_cases_they_support_and_never_pair_one_person_twice(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    [case_id, a, b] = await open_cases(svc, kafka_bootstrap, topic_prefix, 9, 8, 7)
    sam = await register(svc, "Sam", senior=True, capacity=5)
    sue = await register(svc, "Sue", senior=True, capacity=5)
    await register(svc, "Sid", senior=True, trained_on=None)
    await register(svc, "Sol", senior=True, organisations=("Southmead Hospital",))
    rae = await register(svc, "Rae", capacity=4)
    ria = await register(svc, "Ria", capacity=4)
    # Sam supported two cases; one went back to the queue, so he supports one now. Sue supports none.
    assert (await allocate(svc, a, rae, sam)).status_code == 201
    assert (await allocate(svc, b, ria, sam)).status_code == 201
    declared = await svc.client.post(
        f"/cases/{b}/conflict-declaration",
        headers=svc.headers("reviewer", "ria"),
        json={"reason": "knew him"},
    )
    assert declared.status_code == 200, declared.text

    response = await svc.client.get(f"/cases/{case_id}/suggested-reviewers", headers=svc.headers("lac"))
    assert response.status_code == 200, response.text
    body = response.json()
    seniors = {s["name"]: s for s in body["senior_reviewers"]}
    assert [s["name"] for s in body["senior_reviewers"] if s["eligible"]] == ["Sue", "Sam"]
    assert (seniors["Sam"]["supporting"], seniors["Sam"]["last_supported_on"]) == (1, "2026-11-26")
    assert (seniors["Sue"]["supporting"], seniors["Sue"]["last_supported_on"]) == (0, None)
    assert seniors["Sid"]["excluded_because"] == [
        {
            "code": "training_missing",
            "rule": "no training recorded",
            "detail": "Sid (senior reviewer) has no training recorded",
        }
    ]
    [sol_conflict] = seniors["Sol"]["excluded_because"]
    assert sol_conflict["code"] == "conflict_of_interest" and "Sol's employer" in sol_conflict["detail"]

    # The reviewers who are not senior first (Ria, then Rae), each with the best senior; then their
    # second choices; the seniors, idle as reviewers because they support others, come after them.
    pairs = body["pairs"]
    assert [(p["reviewer"]["name"], p["senior_reviewer"]["name"]) for p in pairs] == [
        ("Ria", "Sue"),
        ("Rae", "Sue"),
        ("Ria", "Sam"),
        ("Rae", "Sam"),
        ("Sue", "Sam"),
    ]
    assert pairs[0] == {
        "reviewer": {"reviewer_id": ria, "sub": "ria", "name": "Ria", "caseload": 0, "capacity": 4},
        "senior_reviewer": {
            "reviewer_id": sue,
            "sub": "sue",
            "name": "Sue",
            "caseload": 0,
            "capacity": 5,
            "supporting": 0,
        },
    }
    # The old fields stay for current callers; each excluded reviewer says who and which rule.
    excluded = {s["name"]: s["excluded_because"] for s in body["suggestions"] if not s["eligible"]}
    assert excluded == {
        "Sid": [
            {
                "code": "training_missing",
                "rule": "no training recorded",
                "detail": "Sid has no training recorded",
            }
        ],
        "Sol": [
            {
                "code": "conflict_of_interest",
                "rule": "conflict of interest",
                "detail": "Sol's employer Southmead Hospital was involved in the person's care",
            }
        ],
    }
    assert {"reviewer_id", "sub", "name", "senior", "eligible", "active_caseload", "capacity"} <= set(
        body["suggestions"][0]
    )

    # One click: the pair as offered is allocated, and Sue now supports a case.
    one_click = pairs[0]
    allocated = await allocate(
        svc, case_id, one_click["reviewer"]["reviewer_id"], one_click["senior_reviewer"]["reviewer_id"]
    )
    assert allocated.status_code == 201, allocated.text
    listed = {
        r["name"]: r
        for r in (await svc.client.get("/reviewers", headers=svc.headers("lac"))).json()["reviewers"]
    }
    assert (listed["Sue"]["supporting"], listed["Sam"]["supporting"], listed["Ria"]["caseload"]) == (1, 1, 1)


async def test_an_untrained_senior_reviewer_is_refused_naming_training_missing(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    [case_id] = await open_cases(svc, kafka_bootstrap, topic_prefix, 3)
    rae, sid = await register(svc, "Rae"), await register(svc, "Sid", senior=True, trained_on=None)
    refused = await allocate(svc, case_id, rae, sid)
    assert refused.status_code == 409 and refused.json()["code"] == "training_missing"
    assert refused.json()["violations"][0]["detail"] == "Sid (senior reviewer) has no training recorded"


async def test_the_reviewer_page_and_the_people_directory(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    [case_id, other] = await open_cases(svc, kafka_bootstrap, topic_prefix, 5, 4)
    rae = await register(svc, "Rae", capacity=1, trained_on=date(2026, 1, 10))
    sam = await register(svc, "Sam", senior=True)
    ned = await register(svc, "Ned", trained_on=None)
    await svc.client.post(
        f"/reviewers/{ned}/conflicts",
        headers=svc.headers("lac"),
        json={"kind": "organisation", "name": "Avon"},
    )
    await svc.client.post(
        f"/reviewers/{ned}/deactivation", headers=svc.headers("lac"), json={"reason": "leave"}
    )
    assert (await allocate(svc, case_id, rae, sam)).status_code == 201

    listed = {
        r["name"]: r
        for r in (await svc.client.get("/reviewers", headers=svc.headers("lac"))).json()["reviewers"]
    }
    assert listed["Ned"] | {"reviewer_id": ned} == {
        "reviewer_id": ned,
        "sub": "ned",
        "user_id": "ned",
        "name": "Ned",
        "employers": ["Sirona Care"],
        "organisations": ["Sirona Care"],
        "senior": False,
        "active": False,
        "capacity": 3,
        "caseload": 0,
        "active_caseload": 0,
        "supporting": 0,
        "trained_on": None,
        "training_expires_on": None,
        "standing_conflicts": [{"kind": "organisation", "name": "Avon"}],
        "conflicts": [{"kind": "organisation", "name": "Avon"}],
        "last_allocated_on": None,
        "last_supported_on": None,
        "can_take_case": False,
        "can_take_a_case_today": False,
        "cannot_take_case_because": [
            {"code": "reviewer_inactive", "rule": "inactive", "detail": "Ned is inactive"},
            {
                "code": "training_missing",
                "rule": "no training recorded",
                "detail": "Ned has no training recorded",
            },
        ],
    }
    rae_listed = listed["Rae"]
    assert (rae_listed["caseload"], rae_listed["can_take_case"], rae_listed["training_expires_on"]) == (
        1,
        False,
        "2027-01-10",
    )
    assert [v["code"] for v in rae_listed["cannot_take_case_because"]] == ["at_capacity"]
    assert (listed["Sam"]["supporting"], listed["Sam"]["can_take_case"]) == (1, True)

    page = await svc.client.get(f"/reviewers/{sam}", headers=svc.headers("lac"))
    assert page.status_code == 200, page.text
    # The rule the training page states, as the domain reads it (the web app holds none of its own).
    assert page.json()["training_valid_months"] == domain.TRAINING_VALID_MONTHS
    [supported] = page.json()["cases"]
    assert supported | {"reference": None} == {
        "case_id": case_id,
        "reference": None,
        "role": "senior_reviewer",
        "allocated_on": "2026-11-26",
        "notified_on": "2026-11-21",
        "deadline": "2027-05-21",
        "days_to_deadline": 176,
        "review_type": "initial",
        "focused_reasons": [],
        "place_of_death": "hospital",
    }
    rae_page = (await svc.client.get(f"/reviewers/{rae}", headers=svc.headers("lac"))).json()
    assert [(c["case_id"], c["role"]) for c in rae_page["cases"]] == [(case_id, "reviewer")]
    assert rae_page["name"] == "Rae" and other not in [c["case_id"] for c in rae_page["cases"]]
    missing = await svc.client.get(f"/reviewers/{uuid4()}", headers=svc.headers("lac"))
    assert missing.status_code == 404
    assert (await svc.client.get("/reviewers/not-an-id", headers=svc.headers("lac"))).status_code == 422
    assert (await svc.client.get(f"/reviewers/{sam}", headers=svc.headers("reviewer"))).status_code == 403

    for role in ("lac", "qa_panel", "governance", "ig_officer", "reviewer", "senior_reviewer"):
        directory = await svc.client.get("/people", headers=svc.headers(role))
        assert directory.status_code == 200, (role, directory.text)
        assert directory.json() == {
            "people": [
                {"sub": "ned", "name": "Ned", "senior": False},
                {"sub": "rae", "name": "Rae", "senior": False},
                {"sub": "sam", "name": "Sam", "senior": True},
            ]
        }
    assert (await svc.client.get("/people", headers=svc.headers("partner_system"))).status_code == 403


async def test_a_reviewer_employed_by_the_organisation_that_notified_the_death_is_conflicted(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    opened = opened_envelope(
        case_id,
        ["Southmead Hospital"],
        datetime(2026, 11, 20, tzinfo=UTC),
        notifier_organisation="Pembroke Road Surgery",
    )
    await publish_raw(
        kafka_bootstrap, service_topic("notification", topic_prefix), [(opened.kafka_key, opened.canonical())]
    )

    async def queued() -> bool:
        return [c["case_id"] for c in await queue(svc)] == [str(case_id)]

    await eventually(queued, timeout=60)
    gp = await register(svc, "Gail", organisations=("Pembroke Road Surgery",))
    sam = await register(svc, "Sam", senior=True)
    refused = await allocate(svc, str(case_id), gp, sam)
    assert refused.status_code == 409 and refused.json()["code"] == "conflict_of_interest"
    assert "Pembroke Road Surgery" in refused.json()["violations"][0]["detail"]
    suggested = await svc.client.get(f"/cases/{case_id}/suggested-reviewers", headers=svc.headers("lac"))
    [gail] = [s for s in suggested.json()["suggestions"] if s["name"] == "Gail"]
    assert [e["code"] for e in gail["excluded_because"]] == ["conflict_of_interest"]


async def test_the_queue_counts_from_when_the_death_was_notified_not_from_when_eligibility_was_confirmed(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    confirmed_at = datetime(2026, 11, 20, 9, tzinfo=UTC)
    opened = opened_envelope(case_id, ["Southmead Hospital"], confirmed_at, notified_on=date(2026, 10, 1))
    await publish_raw(
        kafka_bootstrap, service_topic("notification", topic_prefix), [(opened.kafka_key, opened.canonical())]
    )

    async def queued() -> list[dict[str, Any]]:
        return await queue(svc)

    [waiting] = await eventually(queued, timeout=60)
    assert (waiting["notified_on"], waiting["deadline"], waiting["days_waiting"]) == (
        "2026-10-01",
        "2027-04-01",
        56,
    )
    rae, sam = await register(svc, "Rae"), await register(svc, "Sam", senior=True)
    assert (await allocate(svc, str(case_id), rae, sam)).status_code == 201
    [allocated] = [
        e
        for e in await svc.runtime.store.read_stream(str(case_id))
        if e.event_type == "allocation.ReviewerAllocated"
    ]
    assert (allocated.data["notified_on"], allocated.data["deadline"]) == ("2026-10-01", "2027-04-01")


def _notification_envelope(payload: Any, case_id: UUID, version: int, occurred: datetime) -> Envelope:
    return Envelope(
        event_id=uuid4(),
        event_type=payload.event_type,
        schema_version=1,
        stream_id=str(case_id),
        case_id=case_id,
        stream_version=version,
        source="notification",
        source_sequence=version,
        occurred_at=occurred,
        recorded_at=occurred,
        actor=Actor.system("notification"),
        correlation_id="c",
        data=payload.model_dump(mode="json"),
    )


async def test_allocating_a_case_whose_eligibility_is_to_be_confirmed_or_was_rejected_is_409_naming_it(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    opened = opened_envelope(uuid4(), ["Southmead Hospital"], datetime(2026, 11, 1, tzinfo=UTC))
    facts = CaseFacts.model_validate(opened.data["facts"] | {"learning_disability": None})
    personal = SealedPersonalData(key_id="k", nonce="n", ciphertext="c")
    to_confirm, rejected = uuid4(), uuid4()
    envelopes = [
        _notification_envelope(
            EligibilityToConfirm(
                case_id=case_id,
                notification_id=uuid4(),
                unknown=["learning_disability"],
                focused_reasons=[],
                flags=[],
                facts=facts,
                personal=personal,
            ),
            case_id,
            1,
            datetime(2026, 11, 1, tzinfo=UTC),
        )
        for case_id in (to_confirm, rejected)
    ]
    envelopes.append(
        _notification_envelope(
            EligibilityRejected(case_id=rejected, reason="no learning disability"),
            rejected,
            2,
            datetime(2026, 11, 2, tzinfo=UTC),
        )
    )
    await publish_raw(
        kafka_bootstrap,
        service_topic("notification", topic_prefix),
        [(e.kafka_key, e.canonical()) for e in envelopes],
    )
    rae, sam = await register(svc, "Rae"), await register(svc, "Sam", senior=True)

    async def refused(case_id: UUID, code: str) -> dict[str, Any] | None:
        response = await allocate(svc, str(case_id), rae, sam)
        return response.json() if response.status_code == 409 and response.json()["code"] == code else None

    problem = await eventually(lambda: refused(to_confirm, "eligibility_to_confirm"), timeout=30)
    assert problem is not None and str(to_confirm) in problem["detail"]
    assert await eventually(lambda: refused(rejected, "not_eligible"), timeout=30)
    suggested = await svc.client.get(f"/cases/{to_confirm}/suggested-reviewers", headers=svc.headers("lac"))
    assert suggested.status_code == 409 and suggested.json()["code"] == "eligibility_to_confirm"
    reallocated = await svc.client.post(
        f"/cases/{to_confirm}/reallocation",
        headers=svc.headers("lac"),
        json={"reviewer_id": rae, "senior_reviewer_id": sam, "reason": "for the test"},
    )
    assert reallocated.status_code == 409 and reallocated.json()["code"] == "eligibility_to_confirm"
    # What was never notified is still not found.
    assert (await allocate(svc, str(uuid4()), rae, sam)).status_code == 404
    assert await queue(svc) == []
