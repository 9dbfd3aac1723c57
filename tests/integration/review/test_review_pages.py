"""What the web app's pages read from the review service: the vocabulary, the reviewer's own list,
the review as a task list and a report, the QA panel's reading, and case references and names learnt
from other services' events."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope, EventPayload
from events.allocation import ReviewerAllocated, ReviewerRegistered
from events.governance import ReviewApprovedByQA, ReviewReturnedByQA
from events.notification import CaseFacts, CaseOpened, SealedPersonalData
from events.topics import service_topic
from services.allocation.domain import review_deadline
from services.review.app import definition
from tests.integration.review.test_review_service import FOCUSED_MORE, MINIMUM, post
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw

NOW = datetime(2026, 11, 26, 10, tzinfo=UTC)


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: NOW
        yield running


async def publish(
    bootstrap: str, prefix: str, source: str, payload: EventPayload, stream: str, version: int = 1
) -> None:
    case_id = getattr(payload, "case_id", None)
    message = Envelope(
        event_id=uuid4(),
        event_type=payload.event_type,
        schema_version=payload.schema_version,
        stream_id=stream,
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
    await publish_raw(bootstrap, service_topic(source, prefix), [(message.kafka_key, message.canonical())])


def case_opened(case_id: UUID, reference: str) -> CaseOpened:
    facts = CaseFacts(
        age_at_death=62, sex="male", ethnicity="A", learning_disability=True,
        learning_disability_level="severe", autism=False, accommodation_type="residential_care",
        opted_out_of_secondary_use=False, date_of_death=date(2026, 9, 1), place_of_death="hospital",
        place_of_death_organisation=None, gp_practice_code=None, organisations_involved=[],
        notifier_organisation="GP", notifier_role="gp", involve_family=True,
    )  # fmt: skip
    return CaseOpened(
        case_id=case_id, notification_id=uuid4(), reference=reference, review_type="initial",
        focused_reasons=[], flags=[], facts=facts,
        personal=SealedPersonalData(key_id="k", nonce="n", ciphertext="c"),
    )  # fmt: skip


async def allocate(
    svc: RunningService,
    bootstrap: str,
    prefix: str,
    case_id: UUID,
    reviewer: str = "rae",
    senior: str = "sam",
    review_type: str = "initial",
) -> None:
    notified_on = date(2026, 10, 1)
    allocated = ReviewerAllocated(
        case_id=case_id, reviewer_id=uuid4(), reviewer_user_id=reviewer, senior_reviewer_id=uuid4(),
        senior_reviewer_user_id=senior, allocated_on=NOW.date(), notified_on=notified_on,
        deadline=review_deadline(notified_on), review_type=review_type,  # type: ignore[arg-type]
        focused_reasons=[] if review_type == "initial" else ["concerns_about_care"],
    )  # fmt: skip
    await publish(bootstrap, prefix, "allocation", allocated, str(case_id))

    async def started() -> bool:
        response = await svc.client.get(f"/reviews/{case_id}", headers=svc.headers("lac"))
        return response.status_code == 200

    await eventually(started, timeout=60)


async def get(svc: RunningService, path: str, role: str = "lac", who: str = "alice", **params: Any) -> Any:
    return await svc.client.get(path, params=params, headers=svc.headers(role, who))


async def test_every_role_reads_the_vocabulary_with_labels(svc: RunningService) -> None:
    assert (await svc.client.get("/vocabulary")).status_code == 401
    for role in ("reviewer", "qa_panel", "ig_officer", "partner_system"):
        assert (await get(svc, "/vocabulary", role)).status_code == 200
    vocabulary = (await get(svc, "/vocabulary", "reviewer")).json()
    assert vocabulary["learning_themes"]["version"] == "2026.1"
    assert {"code": "sepsis", "label": "Sepsis"} in vocabulary["learning_themes"]["values"]
    grades = vocabulary["care_grades"]["values"]
    assert [g["code"] for g in grades] == [1, 2, 3, 4, 5]
    assert grades[0] == {"code": 1, "name": "excellent", "label": "Excellent care"}
    assert {"code": "coroners_investigation_or_inquest", "label": "Coroner's investigation or inquest"} in (
        vocabulary["pause_reasons"]["values"]
    )
    assert [v["code"] for v in vocabulary["contact_parties"]["values"]] == [
        "family",
        "gp",
        "gp_records",
        "professional",
    ]
    assert vocabulary["phases_of_care"]["free_text"] is True
    assert vocabulary["cause_of_death"]["preventable_or_treatable"][0]["code"] is True
    for name in ("contact_statuses", "record_sources", "family_involvement_steps", "lapse_contributions"):
        assert vocabulary[name]["values"], name


async def test_my_reviews_as_reviewer_and_as_senior_with_references_names_pauses_and_qa_returns(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    mine, theirs = uuid4(), uuid4()
    await publish(
        kafka_bootstrap, topic_prefix, "notification", case_opened(mine, "LDR-2026-00042"), str(mine)
    )
    for user, name in (("rae", "Rae Jones"), ("sam", "Sam Patel")):
        registered = ReviewerRegistered(
            reviewer_id=uuid4(), user_id=user, name=name, organisations=["Sirona"], senior=user == "sam",
            capacity=5,
        )  # fmt: skip
        await publish(kafka_bootstrap, topic_prefix, "allocation", registered, str(uuid4()))
    await allocate(svc, kafka_bootstrap, topic_prefix, mine, reviewer="rae", senior="sam")
    # Sam is a senior reviewer and still the reviewer of another case.
    await allocate(svc, kafka_bootstrap, topic_prefix, theirs, reviewer="sam", senior="sid")

    async def raes() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await get(svc, "/reviews/mine", "reviewer", "rae")).json()["reviews"]
        return rows if rows and rows[0]["reference"] and rows[0]["reviewer_name"] else None

    [row] = await eventually(raes, timeout=60)
    assert row["case_id"] == str(mine) and row["reference"] == "LDR-2026-00042"
    assert (row["role_in_case"], row["reviewer_name"], row["senior_reviewer_name"]) == (
        "reviewer",
        "Rae Jones",
        "Sam Patel",
    )
    assert (row["status"], row["review_type"], row["paused"], row["returned_by_qa"]) == (
        "in_progress",
        "initial",
        False,
        False,
    )
    assert row["deadline"] == "2027-04-01" and row["days_left"] == (date(2027, 4, 1) - NOW.date()).days

    sams = (await get(svc, "/reviews/mine", "senior_reviewer", "sam")).json()["reviews"]
    assert {(r["case_id"], r["role_in_case"]) for r in sams} == {
        (str(mine), "senior_reviewer"),
        (str(theirs), "reviewer"),
    }
    assert (await get(svc, "/reviews/mine", "lac")).status_code == 403
    assert (await get(svc, "/reviews/mine", "reviewer", "nobody")).json() == {"reviews": []}

    assert (
        await post(svc, mine, "pause", {"reason": "coroners_investigation_or_inquest"})
    ).status_code == 201
    [row] = (await get(svc, "/reviews/mine", "reviewer", "rae")).json()["reviews"]
    assert (row["paused"], row["pause_reason"], row["pause_reason_label"]) == (
        True,
        "coroners_investigation_or_inquest",
        "Coroner's investigation or inquest",
    )
    assert (await post(svc, mine, "resumption")).status_code == 201
    for path, body in MINIMUM:
        assert (await post(svc, mine, path, body)).status_code == 201, path
    assert (await post(svc, mine, "submission")).status_code == 201
    returned = ReviewReturnedByQA(case_id=mine, panel_id=uuid4(), comments="say more about the GP's role")
    await publish(kafka_bootstrap, topic_prefix, "governance", returned, str(mine))

    async def returned_to_rae() -> dict[str, Any] | None:
        [row] = (await get(svc, "/reviews/mine", "reviewer", "rae")).json()["reviews"]
        return row if row["returned_by_qa"] else None

    row = await eventually(returned_to_rae, timeout=60)
    assert (row["status"], row["qa_comments"]) == ("in_progress", "say more about the GP's role")
    review = (await get(svc, f"/reviews/{mine}")).json()
    assert review["reference"] == "LDR-2026-00042" and review["returned_by_qa"] is True
    assert [(q["outcome"], q["comments"]) for q in review["qa"]] == [
        ("submitted", None),
        ("returned_for_rework", "say more about the GP's role"),
    ]
    listed = {r["case_id"]: r for r in (await get(svc, "/reviews")).json()["reviews"]}
    assert listed[str(mine)]["reference"] == "LDR-2026-00042"
    assert listed[str(theirs)]["reference"] is None  # no CaseOpened seen for it


async def test_the_review_as_a_task_list_and_a_report_and_the_qa_panel_reads_it_once_submitted(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    await allocate(svc, kafka_bootstrap, topic_prefix, case_id, review_type="focused")
    draft = await get(svc, f"/reviews/{case_id}", "qa_panel", "quinn")
    assert draft.status_code == 403 and draft.json()["code"] == "review_not_submitted"

    review = (await get(svc, f"/reviews/{case_id}", "reviewer", "rae")).json()
    assert [(i["key"], i["status"], i["required"]) for i in review["checklist"]][:7] == [
        ("family_or_carer_contact", "not_started", True),
        ("gp_contact_or_gp_records", "not_started", True),
        ("other_professional_contact", "not_started", True),
        ("pen_portrait", "not_started", True),
        ("quality_of_care_judgement", "not_started", True),
        ("multi_agency_contacts", "not_started", True),
        ("records_from_two_sources", "not_started", True),
    ]
    for path, body in MINIMUM:
        assert (await post(svc, case_id, path, body)).status_code == 201, path
    review = (await get(svc, f"/reviews/{case_id}", "senior_reviewer", "sam")).json()
    checklist = {i["key"]: i for i in review["checklist"]}
    assert checklist["multi_agency_contacts"]["status"] == "in_progress"
    assert checklist["learning"] == {
        "key": "learning",
        "label": "Learning",
        "status": "done",
        "status_label": "Completed",
        "required": False,
        "hint": checklist["learning"]["hint"],
    }
    assert review["missing_for_submission"] == [
        k for k, i in checklist.items() if i["required"] and i["status"] != "done"
    ]
    for path, body in FOCUSED_MORE:
        assert (await post(svc, case_id, path, body)).status_code == 201, path
    assert (await post(svc, case_id, "submission")).status_code == 201

    read = await get(svc, f"/reviews/{case_id}", "qa_panel", "quinn")
    assert read.status_code == 200, read.text
    review = read.json()
    assert review["status"] == "submitted" and review["missing_for_submission"] == []
    records = review["records"]
    assert [(c["party_label"], c["status_label"]) for c in records["contacts"]][:2] == [
        ("Family or carers", "Completed"),
        ("GP", "Completed"),
    ]
    assert [(r["source"], r["received_on"]) for r in records["records"]] == [
        ("GP", "2026-10-23"),
        ("Southmead Hospital", "2026-10-26"),
    ]
    assert records["pen_portrait"]["text"] == "Jo loved Bristol Rovers and his Saturday swim."
    assert records["pen_portrait"]["recorded_by"] == "rae"
    [judgement] = records["care_judgements"]
    assert (judgement["phase_label"], judgement["grade"], judgement["grade_label"]) == (
        "final admission",
        3,
        "Satisfactory care",
    )
    assert records["learning"][0]["themes"] == [{"code": "sepsis", "label": "Sepsis"}]
    assert records["cause_of_death"]["avoidable"] is True
    assert records["family_involvement"][0]["step_label"] == "Invited to comment on the draft"
    assert [q["outcome"] for q in review["qa"]] == ["submitted"]

    # Submitted: the reviewer's notes only; completed: nothing.
    assert (await post(svc, case_id, "notes", {"text": "the family rang"})).status_code == 201
    refused = await post(svc, case_id, "pen-portrait", {"text": "again"})
    assert refused.status_code == 409 and refused.json()["code"] == "review_submitted"
    approved = ReviewApprovedByQA(case_id=case_id, panel_id=uuid4(), quality_rating=4, themes=["sepsis"])
    await publish(kafka_bootstrap, topic_prefix, "governance", approved, str(case_id))

    async def completed() -> bool:
        return bool((await get(svc, f"/reviews/{case_id}")).json()["status"] == "completed")

    await eventually(completed, timeout=60)
    refused = await post(svc, case_id, "notes", {"text": "one more"})
    assert refused.status_code == 409 and refused.json()["code"] == "review_completed"
    review = (await get(svc, f"/reviews/{case_id}", "qa_panel", "quinn")).json()
    assert [q["outcome"] for q in review["qa"]] == ["submitted", "approved"]
    assert [n["text"] for n in review["records"]["notes"]] == ["the family rang"]
    assert (await get(svc, f"/reviews/{case_id}", "governance")).status_code == 403
