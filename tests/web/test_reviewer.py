"""The reviewer's and the senior reviewer's pages in Chromium, on the whole system: a case notified by a
partner, allocated by the LAC, started by the review service; then the reviewer finds it, learns what
is missing, records the national minimum through the task list's forms (bad input refused on the
fields, nothing written) and submits it; another reviewer cannot see it; the senior reviewer reads it.
The tests run in order: each takes the case where the one before left it."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from events.partner import nhs_number_is_valid
from tests.support.notifications import notification
from tests.support.web import assert_accessible, shoot, sign_in
from tests.web.conftest import WebStack

SHOTS = Path("/tmp/shots/reviewer")
REVIEWER, OTHER, SENIOR = "rae.quinn", "kit.evans", "sam.okafor"
MINIMUM = (
    "Family or carer contact",
    "GP contact or GP records",
    "Contact with another professional",
    "Pen portrait",
    "Quality of care judgement",
)


@dataclass
class Scene:
    case_id: str
    reference: str
    other_case_id: str
    other_reference: str


def answer(stack: WebStack, method: str, service: str, path: str, role: str, sub: str, **kw: Any) -> Any:
    """A service's raw answer (the scene waits on some that are not ready yet)."""
    token = stack.issuer.mint(sub, role)
    return httpx.request(
        method, stack.urls[service] + path, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw
    )


def eventually(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def nhs_number(i: int) -> str:
    for n in range(410_000_000 + i * 100, 410_000_000 + i * 100 + 100):
        digits = str(n)
        check = (11 - sum(int(d) * (10 - k) for k, d in enumerate(digits)) % 11) % 11
        if check != 10 and nhs_number_is_valid(digits + str(check)):
            return digits + str(check)
    raise AssertionError("no valid NHS number")


def open_case(stack: WebStack, i: int, reviewer: str, reviewers: dict[str, str]) -> tuple[str, str]:
    """A death notified by a hospital, allocated by the LAC, and the review started."""
    body = notification(**{"person.nhs_number": nhs_number(i), "person.family_name": f"Person{i}"})
    outcome = stack.call(
        "POST", "notification", "/notifications", "partner_system", sub="Southmead Hospital", json=body
    )
    case_id = outcome["case_id"]
    allocation = {"reviewer_id": reviewers[reviewer], "senior_reviewer_id": reviewers[SENIOR]}
    eventually(
        "the case in the allocation queue",
        lambda: (
            answer(
                stack,
                "POST",
                "allocation",
                f"/cases/{case_id}/allocation",
                "lac",
                "lac.alex",
                json=allocation,
            ).status_code
            == 201
        ),
    )
    review = eventually(
        "the review started",
        lambda: next(
            (
                r
                for r in answer(stack, "GET", "review", "/reviews/mine", "reviewer", reviewer).json()[
                    "reviews"
                ]
                if r["case_id"] == case_id
            ),
            None,
        ),
    )
    return case_id, review["reference"]


@pytest.fixture(scope="module")
def scene(web_stack: WebStack) -> Scene:
    reviewers = {}
    for user_id, name, senior in (
        (REVIEWER, "Rae Quinn", False),
        (OTHER, "Kit Evans", False),
        (SENIOR, "Sam Okafor", True),
    ):
        made = web_stack.call(
            "POST",
            "allocation",
            "/reviewers",
            "lac",
            json={
                "user_id": user_id,
                "name": name,
                "organisations": ["Sirona Care"],
                "senior": senior,
                "capacity": 5,
            },
        )
        reviewers[user_id] = made["reviewer_id"]
        web_stack.call(
            "POST",
            "allocation",
            f"/reviewers/{made['reviewer_id']}/training",
            "lac",
            json={"completed_on": date.today().isoformat()},
        )
    case_id, reference = open_case(web_stack, 1, REVIEWER, reviewers)
    other_id, other_reference = open_case(web_stack, 2, OTHER, reviewers)
    return Scene(case_id, reference, other_id, other_reference)


def history(stack: WebStack, case_id: str) -> int:
    return len(stack.call("GET", "review", f"/reviews/{case_id}", "lac", sub="lac.alex")["history"])


def summary(page: Page) -> list[str]:
    return page.locator(".nhsuk-error-summary__list a").all_inner_texts()


def save(page: Page, button: str = "Save") -> int:
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=button).click()
    response = navigation.value
    return response.status if response else 0


def fill_date(page: Page, legend: str, day: str, month: str, year: str) -> None:
    group = page.get_by_role("group", name=legend)
    group.get_by_label("Day").fill(day)
    group.get_by_label("Month").fill(month)
    group.get_by_label("Year").fill(year)


def test_the_reviewer_finds_the_case_and_cannot_submit_it_before_the_minimum(
    web_stack: WebStack, scene: Scene, page: Page
) -> None:
    sign_in(page, web_stack.web, REVIEWER)
    assert page.url == f"{web_stack.web}/reviews"
    table = page.get_by_role("table", name="Your cases")
    row = table.get_by_role("row").filter(has_text=scene.reference)
    expect(row).to_contain_text("In progress")
    expect(row).to_contain_text("Initial review")
    expect(row).to_contain_text("Reviewer")
    expect(table).not_to_contain_text(scene.other_reference)
    assert_accessible(page)
    shoot(page, SHOTS / "my_cases.png")

    # Sorted and filtered with plain links and a GET form.
    page.get_by_role("link", name="Case (sort by this)").click()
    expect(page.get_by_role("table")).to_contain_text("by case reference")
    page.get_by_label("Show cases with status").select_option("submitted")
    page.get_by_role("button", name="Show cases").click()
    assert "status=submitted" in page.url and "sort=reference" in page.url
    expect(page.get_by_text("None of your cases has this status")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Show all your cases").click()

    page.get_by_role("link", name=scene.reference).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Review of {scene.reference}")
    facts = page.locator("dl").nth(1)
    expect(facts).to_contain_text("Female")
    expect(facts).to_contain_text("3 October 2026")
    expect(facts).to_contain_text("Hospital")
    assert_accessible(page)
    shoot(page, SHOTS / "task_list.png")

    before = history(web_stack, scene.case_id)
    assert save(page, "Submit for quality assurance") == 422
    listed = summary(page)
    assert len(listed) == len(MINIMUM) and all(
        any(item.startswith(label) for item in listed) for label in MINIMUM
    ), listed
    expect(page.locator("#task-pen_portrait-error")).to_contain_text("Not completed yet")
    assert_accessible(page)
    shoot(page, SHOTS / "task_list_missing.png")
    # Each missing item links to its task.
    page.locator(".nhsuk-error-summary__list a", has_text="Pen portrait").click()
    expect(page.locator("#task-pen_portrait")).to_be_focused()
    assert history(web_stack, scene.case_id) == before


def test_bad_input_is_refused_on_the_fields_with_the_values_kept_and_nothing_written(
    web_stack: WebStack, scene: Scene, page: Page
) -> None:
    sign_in(page, web_stack.web, REVIEWER)
    before = history(web_stack, scene.case_id)
    page.goto(f"{web_stack.web}/reviews/{scene.case_id}")
    page.get_by_role("link", name="Record another contact").click()
    fill_date(page, "Date of the contact", "31", "2", "2026")
    page.get_by_label("Their organisation").fill("Brunswick Care Ltd")
    assert save(page) == 422
    assert summary(page) == [
        "Select who was contacted",
        "Select what happened",
        "Date of the contact must be a real date",
    ]
    expect(page.locator("#party-error")).to_contain_text("Select who was contacted")
    expect(page.locator("#on-error")).to_contain_text("must be a real date")
    expect(page.get_by_role("group", name="Date of the contact").get_by_label("Day")).to_have_value("31")
    expect(page.get_by_label("Their organisation")).to_have_value("Brunswick Care Ltd")
    assert_accessible(page)
    shoot(page, SHOTS / "contact_form_errors.png")
    page.locator(".nhsuk-error-summary__list a", has_text="real date").click()
    expect(page.get_by_role("group", name="Date of the contact").get_by_label("Day")).to_be_focused()

    # The service's own rule: a professional needs a role and an organisation.
    page.get_by_label("Another professional").check()
    page.get_by_label("Completed").check()
    fill_date(page, "Date of the contact", "2", "11", "2026")
    page.get_by_label("Their organisation").fill("")
    assert save(page) == 422
    assert summary(page) == ["Give the professional's role and organisation"]
    expect(page.locator("#role-error")).to_be_visible()
    expect(page.get_by_label("Another professional")).to_be_checked()
    assert_accessible(page)

    page.goto(f"{web_stack.web}/reviews/{scene.case_id}/care-judgements")
    page.get_by_label("Or enter another").fill("Hospital discharge")
    assert save(page) == 422
    assert summary(page) == ["Select the quality of care", "Say why you graded the care so"]
    expect(page.get_by_label("Or enter another")).to_have_value("Hospital discharge")
    assert_accessible(page)
    shoot(page, SHOTS / "care_judgement_form_errors.png")

    page.goto(f"{web_stack.web}/reviews/{scene.case_id}/pen-portrait")
    assert save(page) == 422
    assert summary(page) == ["Describe the person"]
    assert_accessible(page)
    assert history(web_stack, scene.case_id) == before


def tab_to(page: Page, selector: str) -> None:
    """Press Tab until the element has the focus (a keyboard user's way there)."""
    target = page.locator(selector)
    for _ in range(80):
        page.keyboard.press("Tab")
        if target.evaluate("e => e === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_the_reviewer_records_the_national_minimum_and_submits_it_for_qa(
    web_stack: WebStack, scene: Scene, page: Page
) -> None:
    sign_in(page, web_stack.web, REVIEWER)
    task_list = f"{web_stack.web}/reviews/{scene.case_id}"
    page.goto(task_list)
    for task, status, extra in (
        ("Family or carer contact", "Offered", {}),
        ("GP contact or GP records", "Completed", {}),
        (
            "Contact with another professional",
            "Completed",
            {"Their role": "Ward manager", "Their organisation": "Southmead Hospital"},
        ),
    ):
        page.get_by_role("link", name=task).click()
        page.get_by_label(status, exact=True).check()
        fill_date(page, "Date of the contact", "2", "11", "2026")
        for label, value in extra.items():
            page.get_by_label(label).fill(value)
        assert save(page) == 200
        expect(page.locator(".nhsuk-notification-banner")).to_contain_text("Contact recorded")
    page.get_by_role("link", name="Pen portrait").click()
    page.get_by_label("Describe the person").fill("Maeve's sister loved gardening and Saturday football.")
    assert save(page) == 200

    # A care judgement with the keyboard alone.
    page.goto(f"{task_list}/care-judgements")
    tab_to(page, "#phase")
    page.keyboard.press("Space")
    tab_to(page, "#grade")
    page.keyboard.press("ArrowDown")  # the second grade: good care
    tab_to(page, "#rationale")
    page.keyboard.type("Her care in the community was well coordinated.")
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator(".nhsuk-notification-banner")).to_contain_text("Care judgement recorded")
    for label in MINIMUM:
        item = page.locator(".nhsuk-task-list__item", has_text=label)
        expect(item.locator(".nhsuk-task-list__status")).to_have_text("Completed")
    expect(page.get_by_role("table", name="Quality of care")).to_contain_text("Good care")
    assert_accessible(page)

    page.get_by_label("Note").fill("Spoke to the ward manager on the phone.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator(".nhsuk-notification-banner")).to_contain_text("Note added")

    assert save(page, "Submit for quality assurance") == 200
    expect(page.locator(".nhsuk-notification-banner")).to_contain_text("Review submitted")
    expect(page.locator(".nhsuk-summary-list").first).to_contain_text("Awaiting QA")
    # The sealed free text, opened for the reviewer whose case it is.
    expect(page.get_by_text("Maeve's sister loved gardening")).to_be_visible()
    expect(page.get_by_text("Spoke to the ward manager on the phone.")).to_be_visible()
    assert_accessible(page)
    shoot(page, SHOTS / "review_submitted.png")
    page.get_by_role("link", name="My cases").first.click()
    expect(page.get_by_role("row").filter(has_text=scene.reference)).to_contain_text("Awaiting QA")
    shoot(page, SHOTS / "my_cases_submitted.png")


def test_another_reviewer_sees_the_forbidden_page_and_nothing_of_the_case(
    web_stack: WebStack, scene: Scene, page: Page
) -> None:
    sign_in(page, web_stack.web, OTHER)
    for path in ("", "/contacts", "/conflict"):
        response = page.goto(f"{web_stack.web}/reviews/{scene.case_id}{path}")
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("You cannot see this page")
        text = page.locator("body").inner_text()
        for leak in (scene.reference, "Age at death", "Female", "Rae Quinn", "Southmead"):
            assert leak not in text, leak
        assert_accessible(page)


def test_the_senior_reviewer_reads_the_review_and_cannot_change_it(
    web_stack: WebStack, scene: Scene, page: Page
) -> None:
    sign_in(page, web_stack.web, SENIOR)
    row = page.get_by_role("row").filter(has_text=scene.reference)
    expect(row).to_contain_text("Senior reviewer")
    expect(row).to_contain_text("Supporting Rae Quinn")
    row.get_by_role("link", name=scene.reference).click()
    expect(page.locator(".nhsuk-caption-l")).to_contain_text("supporting Rae Quinn")
    expect(page.get_by_role("button", name="Submit for quality assurance")).to_have_count(0)
    expect(page.locator(".nhsuk-task-list a")).to_have_count(0)
    expect(page.get_by_text("Maeve's sister loved gardening")).to_be_visible()
    expect(page.get_by_text("Spoke to the ward manager on the phone.")).to_be_visible()
    assert_accessible(page)
    shoot(page, SHOTS / "senior_read_only.png")

    # Notes: the review service decides, and its refusal is shown on the field.
    before = history(web_stack, scene.case_id)
    page.get_by_label("Note").fill("Looks thorough.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#text-error")).to_contain_text(f"{scene.reference} is not allocated to {SENIOR}")
    expect(page.get_by_label("Note")).to_have_value("Looks thorough.")
    assert_accessible(page)
    assert history(web_stack, scene.case_id) == before


def test_a_reviewer_pauses_resumes_and_declares_a_conflict_of_interest(
    web_stack: WebStack, scene: Scene, page: Page
) -> None:
    sign_in(page, web_stack.web, OTHER)
    page.get_by_role("link", name=scene.other_reference).click()
    page.get_by_role("link", name="Pause the review").click()
    assert save(page, "Pause the review") == 422
    assert summary(page) == ["Select a reason"]
    assert_accessible(page)
    page.get_by_label("Coroner's investigation or inquest").check()
    assert save(page, "Pause the review") == 200
    expect(page.get_by_role("heading", name="This review is paused")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("button", name="Resume the review").click()
    expect(page.locator(".nhsuk-notification-banner")).to_contain_text("Review resumed")

    page.get_by_role("link", name="Declare a conflict of interest").click()
    expect(page.get_by_text("You will not be able to review this case again")).to_be_visible()
    assert_accessible(page)
    assert save(page, "Declare a conflict of interest") == 422
    assert summary(page) == ["Say what the conflict of interest is"]
    assert_accessible(page)
    page.get_by_label("What is the conflict of interest?").fill("I supported her at her day centre.")
    assert save(page, "Declare a conflict of interest") == 200
    assert page.url == f"{web_stack.web}/reviews"
    expect(page.locator(".nhsuk-notification-banner")).to_contain_text(
        f"You declared a conflict of interest in {scene.other_reference}"
    )
    assert_accessible(page)
