"""The review's free text is sealed under the review service's own key for the case (issue 15, item 2):
never in clear in its events, its read model or on the broker; opened by the API for those who may
read; gone for good (null, `personal_data_destroyed`) once the case's retention ends and the key is
destroyed with review.ReviewPersonalDataDestroyed."""

from typing import Any
from uuid import uuid4

from events.governance import CaseReopened, ReviewApprovedByQA, ReviewReturnedByQA
from events.notification import PersonalDataDestroyed
from events.topics import service_topic
from tests.integration.review.test_access_follows_allocation import RAE, SAM, Case
from tests.integration.review.test_review_service import FOCUSED_MORE, MINIMUM, post, svc
from tests.support.service import RunningService
from tests.support.waiting import eventually, read_topic

__all__ = ["svc"]  # the fixture

# One distinctive string per free-text field, each to be found nowhere but in the API's answers.
SECRET = {
    "pen_portrait": "Jo Zebedee of 14 Quarry Lane loved swimming",
    "family_comments": "his sister Marigold Tunstall rang on 07700 900461",
    "rationale": "Dr Quillon missed the sepsis signs",
    "lapse_what": "Nurse Ottoline Brackenbury gave no fluids",
    "lapse_where": "Ward Xylophone at Frenchay",
    "good_practice": "Keeper Wendeline made a hospital passport",
    "learning": "Learning about Jo Zebedee's epilepsy plan",
    "recommendation": "Tell Practice Manager Ingrid Vosloo",
    "cause": "aspiration pneumonia after Ingleby's visit",
    "referral_to": "Social worker Perpetua Hargreaves",
    "referral_why": "neighbour Barnaby Quennell took his money",
    "escalation": "Tamsin Oakenshield's report needs wider learning",
    "note": "the coroner's officer Lysander Pike rang",
    "rework": "Say more about Dr Quillon's visit on the Tuesday",
    "reopened": "the inquest heard from Grizelda Moon",
}
WRITES: list[tuple[str, dict[str, Any]]] = [
    ("pen-portrait", {"text": SECRET["pen_portrait"]}),
    (
        "family-involvement",
        {"step": "comments_received", "on": "2026-10-24", "comments": SECRET["family_comments"]},
    ),
    ("care-judgements", {"phase": "final admission", "grade": 3, "rationale": SECRET["rationale"]}),
    (
        "lapses-in-care",
        {
            "what": SECRET["lapse_what"],
            "where": SECRET["lapse_where"],
            "organisation": "Southmead Hospital",
            "contribution": "possibly_contributed",
        },
    ),
    ("good-practice", {"text": SECRET["good_practice"], "themes": ["sepsis"]}),
    ("learning", {"text": SECRET["learning"], "themes": ["sepsis"]}),
    ("recommendations", {"what": SECRET["recommendation"], "organisation": "Sirona Care"}),
    ("cause-of-death", {"cause": SECRET["cause"], "preventable_or_treatable": True, "age_at_death": 62}),
    (
        "safeguarding-referrals",
        {"to": SECRET["referral_to"], "on": "2026-10-25", "why": SECRET["referral_why"]},
    ),
    ("escalation", {"detail": SECRET["escalation"]}),
    ("notes", {"text": SECRET["note"]}),
]


def texts_of(review: dict[str, Any]) -> dict[str, Any]:
    """Each free text where the review's answer shows it."""
    records = review["records"]
    [lapse] = records["lapses_in_care"]
    [referral] = records["safeguarding_referrals"]
    return {
        "pen_portrait": records["pen_portrait"]["text"],
        "family_comments": records["family_involvement"][0]["comments"],
        "rationale": records["care_judgements"][0]["rationale"],
        "lapse_what": lapse["what"],
        "lapse_where": lapse["where"],
        "good_practice": records["good_practice"][0]["text"],
        "learning": records["learning"][0]["text"],
        "recommendation": records["recommendations"][0]["what"],
        "cause": records["cause_of_death"]["cause"],
        "referral_to": referral["to"],
        "referral_why": referral["why"],
        "escalation": records["escalations"][-1]["detail"],
        "note": records["notes"][0]["text"],
        "rework": review["qa"][1]["comments"],
        "reopened": review["qa"][-1]["comments"],
    }


async def test_free_text_is_sealed_everywhere_opened_for_readers_and_gone_with_the_key(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case = Case(svc, kafka_bootstrap, topic_prefix)
    await case.publish("allocation", case.allocated(RAE))
    await case.until_read(RAE, 200)
    for path, body in WRITES:
        answer = await post(svc, case.case_id, path, body, who=RAE)
        assert answer.status_code == 201, (path, answer.text)
    for path, body in MINIMUM + FOCUSED_MORE:
        if path in ("contacts", "records"):  # the rest of the minimum: written above
            assert (await post(svc, case.case_id, path, body, who=RAE)).status_code == 201, path
    assert (await post(svc, case.case_id, "submission", who=RAE)).status_code == 201
    returned = ReviewReturnedByQA(case_id=case.case_id, panel_id=uuid4(), comments=SECRET["rework"])
    await case.publish("governance", returned)
    await case.until_status("in_progress")
    [mine] = await case.mine(RAE)
    assert mine["qa_comments"] == SECRET["rework"]
    # The panel's comments are the review's content: reading them in My cases is recorded too.
    last = (await svc.runtime.store.read_stream(f"reads-{case.case_id}"))[-1]
    assert (last.event_type, last.data["reader"], last.data["role"]) == ("review.ReviewRead", RAE, "reviewer")
    assert (await post(svc, case.case_id, "submission", who=RAE)).status_code == 201
    approved = ReviewApprovedByQA(case_id=case.case_id, panel_id=uuid4(), quality_rating=4, themes=["sepsis"])
    await case.publish("governance", approved)
    await case.until_status("completed")
    await case.publish("governance", CaseReopened(case_id=case.case_id, reason=SECRET["reopened"]))
    await case.until_status("in_progress")
    [mine] = await case.mine(SAM)
    assert mine["reopened_reason"] == SECRET["reopened"]

    # Those who may read it read every text as written, in the report and in the history.
    for who, role in ((RAE, "reviewer"), (SAM, "senior_reviewer"), ("lac-1", "lac")):
        review = (await case.read(who, role)).json()
        assert texts_of(review) == SECRET
        assert review["personal_data_destroyed"] is False
        notes = [h["data"]["text"] for h in review["history"] if h["event_type"] == "review.NoteAdded"]
        assert notes == [SECRET["note"]]

    # Nowhere in clear: not in the service's events, its read model, nor on the broker.
    pool = svc.runtime.pool
    stored = "\n".join(
        [
            r["envelope"]
            for r in await pool.fetch("SELECT envelope FROM events WHERE case_id = $1", case.case_id)
        ]
        + [str(dict(r)) for r in await pool.fetch("SELECT * FROM reviews WHERE case_id = $1", case.case_id)]
    )
    store = svc.runtime.store
    recorded = sum([await store.stream_version(s) for s in (str(case.case_id), f"reads-{case.case_id}")])
    published = await read_topic(kafka_bootstrap, service_topic("review", topic_prefix), at_least=recorded)
    on_the_broker = "\n".join(r.value.decode() for r in published)
    for field, text in SECRET.items():
        assert text not in stored, field
        assert text not in on_the_broker, field
    assert "ciphertext" in stored and "ciphertext" in on_the_broker

    # The case's retention ends: the review's key goes with review.ReviewPersonalDataDestroyed.
    destroyed = PersonalDataDestroyed(
        case_id=case.case_id, reason="retention_period_ended", retention_years=8
    )
    await case.publish("notification", destroyed)

    async def gone() -> bool:
        return bool((await case.read("lac-1", "lac")).json()["personal_data_destroyed"])

    await eventually(gone, timeout=60)
    for who, role in ((RAE, "reviewer"), ("lac-1", "lac")):
        review = (await case.read(who, role)).json()
        assert set(texts_of(review).values()) == {None}, texts_of(review)
        assert all(
            v is None or "ciphertext" not in str(v) for h in review["history"] for v in h["data"].values()
        )
    [mine] = await case.mine(RAE)
    assert mine["reopened_reason"] is None
    key = await pool.fetchrow(
        "SELECT wrapped, destroyed_at FROM data_keys WHERE key_id = $1", str(case.case_id)
    )
    assert key is not None and key["wrapped"] is None and key["destroyed_at"] is not None
    types = [e.event_type for e in await store.read_stream(str(case.case_id))]
    assert types.count("review.ReviewPersonalDataDestroyed") == 1
    for path, body in (("notes", {"text": "after"}), ("pause", {"reason": "police_investigation"})):
        late = await post(svc, case.case_id, path, body, who=RAE)
        assert (late.status_code, late.json()["code"]) == (410, "personal_data_destroyed"), (path, late.text)
