"""The review as a task list (one rule with submission), the notes rule after submission, and the
vocabulary: every value a write accepts has a label."""

from datetime import date
from typing import get_args

import pytest

from events.notification import FocusedReason, ReviewType
from events.review import (
    CauseOfDeathRecorded,
    ContactParty,
    ContactStatus,
    Contribution,
    FamilyInvolvementRecorded,
    NoteAdded,
    PauseReason,
    PenPortraitWritten,
    RecordsRequested,
)
from services.review import domain
from services.review.vocabulary import LABELS, THEME_LABELS, THEMES, grade_label, label
from tests.unit.review.test_review_rules import CASE, MINIMUM, apply, contact, sealed, started


def statuses(review: domain.Review) -> dict[str, str]:
    return {i.key: i.status for i in domain.checklist(review)}


def test_an_empty_initial_review_lists_the_minimum_as_required_and_the_sections_as_optional() -> None:
    items = domain.checklist(started())
    assert [(i.key, i.required) for i in items] == [
        ("family_or_carer_contact", True),
        ("gp_contact_or_gp_records", True),
        ("other_professional_contact", True),
        ("pen_portrait", True),
        ("quality_of_care_judgement", True),
        ("learning", False),
        ("good_practice", False),
        ("lapses_in_care", False),
        ("recommendations", False),
        ("cause_of_death", False),
        ("safeguarding_referrals", False),
        ("family_involvement", False),
    ]
    assert {i.status for i in items} == {"not_started"}
    assert all(i.label and i.hint for i in items)


def test_the_checklist_and_the_submission_rule_agree() -> None:
    focused = apply(started("focused"), *MINIMUM, contact("professional", organisation="Southmead"))
    assert statuses(focused)["multi_agency_contacts"] == "done"
    assert statuses(focused)["records_from_two_sources"] == "not_started"
    assert domain.missing_for_submission(focused) == ["records_from_two_sources"]
    asked = apply(focused, RecordsRequested(case_id=CASE, source="GP", requested_on=date(2026, 2, 1)))
    assert statuses(asked)["records_from_two_sources"] == "in_progress"
    assert domain.missing_for_submission(asked) == ["records_from_two_sources"]


def test_items_under_way_show_in_progress_and_optional_sections_done_once_recorded() -> None:
    review = apply(
        started("focused"),
        contact("gp", "offered"),
        contact("professional", organisation="Sirona"),
        FamilyInvolvementRecorded(case_id=CASE, step="invited_to_comment", on=date(2026, 3, 1)),
        CauseOfDeathRecorded(
            case_id=CASE, cause=sealed("sepsis"), preventable_or_treatable=True, avoidable=True
        ),
    )
    got = statuses(review)
    assert got["gp_contact_or_gp_records"] == "in_progress"
    assert got["other_professional_contact"] == "done"
    assert got["multi_agency_contacts"] == "in_progress"
    assert got["family_involvement"] == "in_progress"
    assert got["cause_of_death"] == "done"
    assert got["learning"] == "not_started"
    offered = apply(
        review, FamilyInvolvementRecorded(case_id=CASE, step="final_copy_offered", on=date(2026, 3, 9))
    )
    assert statuses(offered)["family_involvement"] == "done"


def test_family_contact_not_wanted_is_done_and_says_so() -> None:
    [family] = [i for i in domain.checklist(apply(started(), contact("family", "not_wanted"))) if i.required][
        :1
    ]
    assert (family.key, family.status) == ("family_or_carer_contact", "done")
    assert "did not want" in family.hint


def test_a_submitted_review_takes_notes_only_and_a_completed_one_nothing() -> None:
    review = apply(started(), *MINIMUM)
    submitted = apply(review, *domain.decide_submission(review, "rae", date(2026, 5, 1)))
    assert submitted.submissions == 1
    assert domain.decide_record(submitted, "rae", NoteAdded(case_id=CASE, text=sealed("family rang")))
    with pytest.raises(domain.ReviewIsSubmitted) as refused:
        domain.decide_record(submitted, "rae", PenPortraitWritten(case_id=CASE, text=sealed("y")))
    assert refused.value.code == "review_submitted"
    returned = apply(
        submitted, *domain.decide_qa_outcome(submitted, False, sealed("more on the GP"), date(2026, 6, 1))
    )
    assert (returned.returned_by_qa, returned.returned_comments) == (True, sealed("more on the GP"))
    again = apply(returned, *domain.decide_submission(returned, "rae", date(2026, 6, 2)))
    assert (again.submissions, again.returned_by_qa) == (2, False)
    completed = apply(again, *domain.decide_qa_outcome(again, True, None, date(2026, 6, 9)))
    for payload in (
        NoteAdded(case_id=CASE, text=sealed("late")),
        PenPortraitWritten(case_id=CASE, text=sealed("y")),
    ):
        with pytest.raises(domain.ReviewIsCompleted) as closed:
            domain.decide_record(completed, "rae", payload)
        assert (closed.value.code, closed.value.status) == ("review_completed", 409)


def test_a_pause_keeps_its_reason_until_the_review_resumes() -> None:
    paused = apply(
        started(), *domain.decide_pause(started(), "rae", "police_investigation", date(2026, 3, 1))
    )
    assert paused.pause_reason == "police_investigation"
    assert apply(paused, *domain.decide_resume(paused, "rae", date(2026, 3, 5))).pause_reason is None


@pytest.mark.parametrize(
    ("vocabulary", "values"),
    [
        ("contact_parties", ContactParty),
        ("contact_statuses", ContactStatus),
        ("pause_reasons", PauseReason),
        ("lapse_contributions", Contribution),
        ("focused_reasons", FocusedReason),
        ("review_types", ReviewType),
        ("review_statuses", domain.Status),
        ("checklist_statuses", domain.ItemStatus),
    ],
)
def test_every_value_a_write_accepts_has_a_label_in_sentence_case(vocabulary: str, values: object) -> None:
    assert set(LABELS[vocabulary]) == set(get_args(values))
    for text in LABELS[vocabulary].values():
        assert text[0].isupper()  # sentence case: "Coroner's investigation or inquest"


def test_themes_and_grades_have_labels_and_free_text_reads_as_itself() -> None:
    assert set(THEME_LABELS) == THEMES
    assert grade_label(4, "default-1") == "Care fell short of expected good practice"
    assert grade_label(2, "old-scale") == "Grade 2 (scale old-scale)"
    assert label("phases_of_care", "final admission") == "final admission"
    assert label("phases_of_care", "final_illness") == "Final illness"
