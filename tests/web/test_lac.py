"""The Local Area Contact's pages in Chromium: today's work, the queue, a case, personal details seen
only with a reason (and logged), eligibility, allocation from the suggested pairs (also by keyboard
alone) and the service's refusals on the form. The scene is set through the services' APIs."""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.notifications import notification
from tests.support.web import assert_accessible, shoot, sign_in
from tests.web.conftest import WebStack

SHOTS = Path("/tmp/shots/lac")
REVIEWERS = (
    ("rae.jones", "Rae Jones", False),
    ("kit.morris", "Kit Morris", False),
    ("sam.patel", "Sam Patel", True),
    ("lin.chen", "Lin Chen", True),
)
UNTRAINED = ("ada.brook", "Ada Brook")


@dataclass
class Case:
    case_id: str
    reference: str | None


@dataclass
class Scene:
    stack: WebStack
    reviewer_ids: dict[str, str]
    waiting: dict[str, Case]  # cases opened and waiting for allocation, one per test that allocates
    to_confirm: Case  # a diagnosis the notifier did not know

    def api(self, method: str, service: str, path: str, role: str = "lac", **kwargs: Any) -> Any:
        return self.stack.call(method, service, path, role, sub="lac.alex", **kwargs)


def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Services learn of each other's events through the broker: wait until `check` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, "the services did not catch up in time"
            return found
        time.sleep(0.3)


def notify(stack: WebStack, family_name: str, **changes: Any) -> dict[str, Any]:
    body = notification(**{"person.nhs_number": None, "person.family_name": family_name, **changes})
    outcome: dict[str, Any] = stack.call(
        "POST", "notification", "/notifications", "partner_system", sub="gp.lee", json=body
    )
    return outcome


def queued(scene_stack: WebStack, case_id: str) -> bool:
    found = scene_stack.call("GET", "allocation", "/allocation-queue", "lac")["cases"]
    return any(c["case_id"] == case_id for c in found)


@pytest.fixture(scope="module")
def scene(web_stack: WebStack) -> Scene:
    ids = {}
    for user_id, name, senior in REVIEWERS:
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
        ids[user_id] = made["reviewer_id"]
        web_stack.call(
            "POST",
            "allocation",
            f"/reviewers/{made['reviewer_id']}/training",
            "lac",
            json={"completed_on": date.today().isoformat()},
        )
    web_stack.call(
        "POST",
        "allocation",
        "/reviewers",
        "lac",
        json={
            "user_id": UNTRAINED[0],
            "name": UNTRAINED[1],
            "organisations": ["Sirona Care"],
            "senior": False,
            "capacity": 5,
        },
    )
    waiting = {}
    for use in ("open", "allocate", "keyboard", "refused", "reallocate", "ethnicity"):
        outcome = notify(web_stack, f"Waiting-{use}")
        assert outcome["outcome"] == "case_opened", outcome
        waiting[use] = Case(outcome["case_id"], outcome["reference"])
    unknown = notify(web_stack, "Unknown", **{"person.learning_disability": None, "person.autism": False})
    assert unknown["outcome"] == "eligibility_to_confirm", unknown
    for case in waiting.values():
        eventually(lambda c=case: queued(web_stack, c.case_id))  # type: ignore[misc]
    return Scene(web_stack, ids, waiting, Case(unknown["case_id"], None))


def signed_in(page: Page, scene: Scene) -> None:
    sign_in(page, scene.stack.web, "lac.alex")


def card_count(page: Page, card: str) -> int:
    return int(page.locator(f"#{card} .leder-count").inner_text())


def test_today_counts_the_work_as_the_services_see_it(scene: Scene, page: Page) -> None:
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac")
    to_confirm = scene.api("GET", "notification", "/cases", params={"status": "eligibility_to_confirm"})
    waiting = scene.api("GET", "allocation", "/allocation-queue")["cases"]
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Today")
    assert card_count(page, "card-eligibility") == len(to_confirm["cases"]) >= 1
    assert card_count(page, "card-queue") == len(waiting) >= 1
    expect(page.locator("#card-queue")).to_contain_text("The longest has waited")
    page.locator("#card-eligibility a").click()
    assert "status=eligibility_to_confirm" in page.url
    expect(page.locator("tbody tr")).to_have_count(len(to_confirm["cases"]))
    assert_accessible(page)
    page.goto(f"{scene.stack.web}/lac")
    shoot(page, SHOTS / "home.png")
    assert_accessible(page)


def test_the_queue_lists_the_case_by_reference_and_opens_it(scene: Scene, page: Page) -> None:
    case = scene.waiting["open"]
    assert case.reference is not None
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac/queue")
    row = page.locator("tbody tr", has_text=case.reference)
    expect(row).to_contain_text("Initial review")
    expect(row).to_contain_text("Hospital")
    shoot(page, SHOTS / "queue.png")
    assert_accessible(page)
    row.get_by_role("link", name=case.reference, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(case.reference)
    facts = page.locator(".nhsuk-summary-list").first
    expect(facts).to_contain_text("Southmead Hospital")
    expect(facts).to_contain_text("White: British (A)")
    expect(page.locator(".nhsuk-summary-list").nth(1)).to_contain_text("Not allocated")
    shoot(page, SHOTS / "case.png")
    assert_accessible(page)


def test_the_list_of_cases_filters_and_sorts(scene: Scene, page: Page) -> None:
    case = scene.waiting["open"]
    assert case.reference is not None
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac/cases")
    page.get_by_label("Case reference").fill("not-a-reference")
    page.get_by_role("button", name="Show cases").click()
    expect(page.locator(".nhsuk-error-summary")).to_contain_text("Enter a case reference like")
    expect(page.locator("#reference-error")).to_be_visible()
    expect(page.get_by_label("Case reference")).to_have_value("not-a-reference")
    assert_accessible(page)
    page.get_by_label("Case reference").fill(case.reference)
    page.get_by_role("button", name="Show cases").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text(case.reference)
    page.goto(f"{scene.stack.web}/lac/cases")
    page.get_by_role("link", name=re.compile(r"^Age at death")).click()
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Age at death")
    shoot(page, SHOTS / "cases.png")
    assert_accessible(page)


def test_personal_details_are_shown_only_for_a_reason_and_the_view_is_logged(
    scene: Scene, page: Page
) -> None:
    case = scene.waiting["open"]
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac/cases/{case.case_id}")
    page.get_by_role("link", name="See personal details").click()
    page.get_by_role("button", name="Show personal details").click()
    expect(page.locator(".nhsuk-error-summary")).to_contain_text("Enter why you need to see")
    expect(page.locator("#reason-error")).to_contain_text("Enter why you need to see")
    assert_accessible(page)
    page.get_by_label("Why do you need to see the personal details?").fill("To contact the family")
    page.get_by_role("button", name="Show personal details").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Personal details")
    expect(page.locator("main")).to_contain_text("Zoë Waiting-open")
    expect(page.locator("main")).to_contain_text("Maeve O'Brien")
    assert "reason" not in page.url and "Zo" not in page.url
    expect(page.locator(".nhsuk-header__account")).to_contain_text("Alex Morgan, Local Area Contact")
    shoot(page, SHOTS / "personal-details.png")
    assert_accessible(page)

    def logged() -> list[dict[str, Any]]:
        found = scene.api(
            "GET", "audit", "/audit/access", role="ig_officer", params={"case_id": case.case_id}
        )["access"]
        return [
            a for a in found if a["read"] == "personal_details" and a["reason"] == "To contact the family"
        ]

    [entry] = eventually(logged)
    assert entry["who"] == "lac.alex" and entry["role"] == "lac"


def test_the_lac_confirms_eligibility_and_the_case_gets_its_reference(scene: Scene, page: Page) -> None:
    case = scene.to_confirm
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac/cases?status=eligibility_to_confirm")
    page.locator(f"a[href='/lac/cases/{case.case_id}']").click()
    expect(page.locator("main")).to_contain_text("None yet")
    page.get_by_role("button", name="Confirm or reject eligibility").click()
    page.get_by_role("button", name="Save decision").click()
    expect(page.locator(".nhsuk-error-summary")).to_contain_text("Select whether LeDeR reviews this death")
    assert_accessible(page)
    page.get_by_label("Eligible: the person had").check()
    page.get_by_role("button", name="Save decision").click()
    # The notification service's own rule: a confirmation names a diagnosis; shown on the checkboxes.
    expect(page.locator("#diagnoses-error")).to_be_visible()
    expect(page.get_by_label("Eligible: the person had")).to_be_checked()
    assert_accessible(page)
    page.get_by_role("checkbox", name="A learning disability").check()
    page.get_by_role("button", name="Save decision").click()
    banner = page.locator(".nhsuk-notification-banner")
    expect(banner).to_contain_text(re.compile(r"Eligibility confirmed: the case is LDR-\d{4}-\d{5}"))
    expect(page.locator("h1")).to_contain_text("LDR-")
    expect(page.locator("h1")).to_contain_text("Open")
    assert_accessible(page)


def test_the_lac_allocates_from_the_first_suggested_pair(scene: Scene, page: Page) -> None:
    case = scene.waiting["allocate"]
    assert case.reference is not None
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac/queue")
    page.get_by_role("link", name=f"Allocate {case.reference}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Allocate the case")
    # Whoever cannot take it is listed, with why, in words.
    expect(page.locator("main table tr", has_text="Ada Brook")).to_contain_text("no training recorded")
    shoot(page, SHOTS / "allocation.png")
    assert_accessible(page)
    # Posting without choosing: the error in the summary, linked to the choice, and on it.
    page.get_by_role("button", name="Allocate").click()
    summary = page.locator(".nhsuk-error-summary")
    expect(summary).to_contain_text("Select a reviewer and senior reviewer")
    expect(page.locator("#pair-error")).to_contain_text("Select a reviewer and senior reviewer")
    shoot(page, SHOTS / "allocation-error.png")
    assert_accessible(page)
    summary.get_by_role("link").click()
    first = page.locator("input[name=pair]").first
    label = page.locator(f"label[for='{first.get_attribute('id')}']").inner_text()
    reviewer_name = label.split(" with ")[0]
    first.check()
    page.get_by_role("button", name="Allocate").click()
    expect(page.locator(".nhsuk-notification-banner")).to_contain_text(f"Case allocated to {reviewer_name}")
    assert_accessible(page)
    # The case leaves the queue, and the case page names the reviewer once notification has heard.
    assert not queued(scene.stack, case.case_id)
    page.goto(f"{scene.stack.web}/lac/queue")
    expect(page.locator("main")).not_to_contain_text(case.reference)

    def named() -> bool:
        page.goto(f"{scene.stack.web}/lac/cases/{case.case_id}")
        who = page.locator(".nhsuk-summary-list").nth(1).inner_text()
        return reviewer_name in who and "Case opened" in page.locator("main table").inner_text()

    eventually(named)
    expect(page.get_by_role("link", name="Reallocate to another reviewer")).to_be_visible()
    assert_accessible(page)


def test_a_refused_allocation_shows_the_services_reason_on_the_choice(scene: Scene, page: Page) -> None:
    case = scene.waiting["refused"]
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac/cases/{case.case_id}/allocation")
    page.locator("input[name=pair]").first.check()
    # Someone else allocates it meanwhile: the allocation service refuses the second (409).
    scene.api(
        "POST",
        "allocation",
        f"/cases/{case.case_id}/allocation",
        json={
            "reviewer_id": scene.reviewer_ids["kit.morris"],
            "senior_reviewer_id": scene.reviewer_ids["lin.chen"],
        },
    )
    page.get_by_role("button", name="Allocate").click()
    expect(page.locator(".nhsuk-error-summary")).to_contain_text("not waiting")
    expect(page.locator("#pair-error")).to_contain_text("not waiting")
    assert case.case_id not in page.locator(".nhsuk-error-summary").inner_text()
    assert_accessible(page)


def test_the_lac_allocates_with_the_keyboard_alone(scene: Scene, page: Page) -> None:
    case = scene.waiting["keyboard"]
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac/cases/{case.case_id}/allocation")

    def tab_to(selector: str) -> None:
        for _ in range(80):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("input[name=pair]")
    page.keyboard.press("Space")
    expect(page.locator("input[name=pair]").first).to_be_checked()
    tab_to("button[type=submit].nhsuk-button")
    page.keyboard.press("Enter")
    expect(page.locator(".nhsuk-notification-banner")).to_contain_text("Case allocated to")
    assert not queued(scene.stack, case.case_id)
    assert_accessible(page)


def test_the_lac_reallocates_with_a_reason(scene: Scene, page: Page) -> None:
    case = scene.waiting["reallocate"]
    scene.api(
        "POST",
        "allocation",
        f"/cases/{case.case_id}/allocation",
        json={
            "reviewer_id": scene.reviewer_ids["rae.jones"],
            "senior_reviewer_id": scene.reviewer_ids["sam.patel"],
        },
    )
    signed_in(page, scene)
    eventually(lambda: scene.api("GET", "notification", f"/cases/{case.case_id}")["reviewer_user_id"])
    page.goto(f"{scene.stack.web}/lac/cases/{case.case_id}")
    page.get_by_role("link", name="Reallocate to another reviewer").click()
    expect(page.locator("main")).to_contain_text(
        "Reviewed now by Rae Jones, with Sam Patel as senior reviewer"
    )
    choice = page.locator("input[name=pair]").first
    label = page.locator(f"label[for='{choice.get_attribute('id')}']").inner_text()
    choice.check()
    page.get_by_role("button", name="Reallocate").click()
    expect(page.locator("#reason-error")).to_contain_text("Enter why the case moves")
    expect(page.locator("input[name=pair]").first).to_be_checked()
    assert_accessible(page)
    page.get_by_label("Why does the case move to another reviewer?").fill("Rae is on long-term leave")
    page.get_by_role("button", name="Reallocate").click()
    banner = page.locator(".nhsuk-notification-banner")
    expect(banner).to_contain_text(f"Case reallocated to {label.split(' with ')[0]}")
    assert_accessible(page)


def test_recording_an_ethnicity_shows_what_the_service_decided(scene: Scene, page: Page) -> None:
    case = scene.waiting["ethnicity"]
    signed_in(page, scene)
    page.goto(f"{scene.stack.web}/lac/cases/{case.case_id}")
    page.get_by_role("link", name="Record the person's ethnicity").click()
    expect(page.get_by_label("White: British")).to_be_checked()
    assert_accessible(page)
    page.get_by_label("Asian or Asian British: Indian").check()
    page.get_by_role("button", name="Save ethnicity").click()
    banner = page.locator(".nhsuk-notification-banner")
    expect(banner).to_contain_text("Ethnicity recorded: Asian or Asian British: Indian (H)")
    expect(banner).to_contain_text("The case now needs a focused review")
    expect(page.locator(".nhsuk-summary-list").first).to_contain_text("Focused review")
    assert_accessible(page)
