"""The governance rules on states and dates: a decision is not made before its panel meets, an action
is not completed before it was agreed or in the future, a review not submitted is not on an agenda."""

from datetime import date
from uuid import uuid4

import pytest

from events import EventPayload
from events.governance import (
    ActionAgreed,
    CaseClosed,
    QAPanelScheduled,
    ReviewAddedToPanelAgenda,
    ReviewAwaitingQA,
    ReviewReturnedByQA,
)
from services.governance import domain

CASE = uuid4()
PANEL = QAPanelScheduled(panel_id=uuid4(), held_on=date(2026, 6, 10))


def case(*events: EventPayload) -> domain.CaseQA:
    state = None
    for event in events:
        state = domain.evolve_case(state, event)
    assert state is not None
    return state


def on_agenda() -> domain.CaseQA:
    return case(
        ReviewAwaitingQA(case_id=CASE, submitted_on=date(2026, 6, 1)),
        *domain.decide_add_to_agenda(
            case(ReviewAwaitingQA(case_id=CASE, submitted_on=date(2026, 6, 1))), PANEL
        ),
    )


def test_the_agenda_item_knows_its_panels_date() -> None:
    [added] = domain.decide_add_to_agenda(
        case(ReviewAwaitingQA(case_id=CASE, submitted_on=date(2026, 6, 1))), PANEL
    )
    assert isinstance(added, ReviewAddedToPanelAgenda) and added.held_on == PANEL.held_on
    assert on_agenda().panel_held_on == PANEL.held_on


def test_a_decision_before_the_panels_date_is_refused_naming_the_rule() -> None:
    with pytest.raises(domain.ImpossibleDate) as refused:
        domain.decide_qa(on_agenda(), PANEL.panel_id, True, 4, [], None, date(2026, 6, 9))
    assert (refused.value.status, refused.value.code) == (422, "decided_before_panel")
    assert refused.value.field == "panel_id"
    decided = domain.decide_qa(on_agenda(), PANEL.panel_id, True, 4, [], None, date(2026, 6, 10))
    assert [e.event_type for e in decided] == ["governance.ReviewApprovedByQA", "governance.CaseClosed"]


def test_a_returned_review_is_not_submitted_and_cannot_go_on_an_agenda() -> None:
    returned = case(
        ReviewAwaitingQA(case_id=CASE, submitted_on=date(2026, 6, 1)),
        ReviewAddedToPanelAgenda(case_id=CASE, panel_id=PANEL.panel_id),
        ReviewReturnedByQA(case_id=CASE, panel_id=PANEL.panel_id, comments="more"),
    )
    with pytest.raises(domain.ReviewNotSubmitted) as refused:
        domain.decide_add_to_agenda(returned, PANEL)
    assert (refused.value.status, refused.value.code) == (409, "review_not_submitted")


def test_reopening_a_case_that_is_not_closed_is_a_conflict_naming_the_state() -> None:
    with pytest.raises(domain.CaseNotClosed) as refused:
        domain.decide_reopen(on_agenda(), "why")
    assert (refused.value.status, refused.value.code) == (409, "case_not_closed")
    closed = case(
        ReviewAwaitingQA(case_id=CASE, submitted_on=date(2026, 6, 1)),
        CaseClosed(case_id=CASE, closed_on=date(2026, 6, 10)),
    )
    assert [e.event_type for e in domain.decide_reopen(closed, "why")] == ["governance.CaseReopened"]


def agreed(on: date | None = date(2026, 5, 1)) -> domain.Action:
    action = domain.evolve_action(
        None,
        ActionAgreed(
            action_id=uuid4(),
            what="w",
            organisation="o",
            lead="l",
            due_on=date(2026, 9, 1),
            case_ids=[],
            themes=[],
            agreed_on=on,
        ),
    )
    assert action is not None
    return action


def test_an_action_completed_before_it_was_agreed_or_in_the_future_is_refused() -> None:
    today = date(2026, 6, 1)
    with pytest.raises(domain.ImpossibleDate) as before:
        domain.decide_completion(agreed(), "evidence", today, completed_on=date(2026, 4, 30))
    assert (before.value.status, before.value.code, before.value.field) == (
        422,
        "completed_before_agreed",
        "completed_on",
    )
    with pytest.raises(domain.ImpossibleDate) as future:
        domain.decide_completion(agreed(), "evidence", today, completed_on=date(2026, 6, 2))
    assert (future.value.code, future.value.field) == ("date_in_future", "completed_on")
    [done] = domain.decide_completion(agreed(), "evidence", today, completed_on=date(2026, 5, 1))
    assert done.completed_on == date(2026, 5, 1)  # type: ignore[attr-defined]
    [done] = domain.decide_completion(agreed(), "evidence", today)
    assert done.completed_on == today  # type: ignore[attr-defined]


def test_an_action_agreed_today_cannot_be_completed_before_today() -> None:
    with pytest.raises(domain.ImpossibleDate):
        domain.decide_completion(agreed(date(2026, 6, 1)), "evidence", date(2026, 5, 31))
