"""The QA panel's decision as a command value, its checks in the domain (issue 17, item 1): an
approval needs a quality rating, a return needs the panel's comments."""

from datetime import date
from uuid import uuid4

import pytest

from events.governance import (
    CaseClosed,
    QAPanelScheduled,
    ReviewApprovedByQA,
    ReviewAwaitingQA,
    ReviewReturnedByQA,
)
from services.governance import domain

CASE = uuid4()
PANEL = QAPanelScheduled(panel_id=uuid4(), held_on=date(2026, 6, 10))


def on_agenda() -> domain.CaseQA:
    awaiting = domain.evolve_case(None, ReviewAwaitingQA(case_id=CASE, submitted_on=date(2026, 6, 1)))
    assert awaiting is not None
    state = awaiting
    for event in domain.decide_add_to_agenda(awaiting, PANEL):
        state = domain.evolve_case(state, event) or state
    return state


@pytest.mark.parametrize(
    ("decision", "code", "detail"),
    [
        (
            domain.QADecision(PANEL.panel_id, approved=True, themes=("sepsis",)),
            "quality_rating_required",
            "an approval needs a quality rating",
        ),
        (
            domain.QADecision(PANEL.panel_id, approved=False, comments=""),
            "comments_required",
            "a return for rework needs the panel's comments",
        ),
    ],
)
def test_a_decision_without_what_it_needs_is_refused_before_anything_is_looked_up(
    decision: domain.QADecision, code: str, detail: str
) -> None:
    with pytest.raises(domain.IncompleteDecision) as refused:
        domain.check_qa_decision(decision)
    assert (refused.value.status, refused.value.code, refused.value.detail) == (422, code, detail)
    with pytest.raises(domain.IncompleteDecision):
        domain.decide_qa_decision(on_agenda(), decision, date(2026, 6, 10))


def test_an_approval_closes_the_case_and_a_return_sends_the_comments_back() -> None:
    approval = domain.QADecision(PANEL.panel_id, approved=True, quality_rating=4, themes=("sepsis",))
    approved, closed = domain.decide_qa_decision(on_agenda(), approval, date(2026, 6, 10))
    assert approved == ReviewApprovedByQA(
        case_id=CASE, panel_id=PANEL.panel_id, quality_rating=4, themes=["sepsis"]
    )
    assert closed == CaseClosed(case_id=CASE, closed_on=date(2026, 6, 10))
    rework = domain.QADecision(PANEL.panel_id, approved=False, comments="more on the family")
    assert domain.decide_qa_decision(on_agenda(), rework, date(2026, 6, 10)) == [
        ReviewReturnedByQA(case_id=CASE, panel_id=PANEL.panel_id, comments="more on the family")
    ]
