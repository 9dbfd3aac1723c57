"""One case through the whole process, as the people do it, each signed in as themselves in Chromium:
partner staff notify a death through the form; the LAC finds it in the queue, reads the personal
details for a reason and allocates it from the suggested pairs; the reviewer finds it under My cases,
tries to submit too early, records the national minimum through the task list and submits; the LAC
schedules a panel and puts the review on it; the panel returns it with comments; the reviewer reads
them, fixes the review and resubmits; the panel approves it; the Governance Group sees the month's
KPIs and agrees an action on the case; the IG officer sees each of those steps on the case's
timeline, the LAC's look at the personal details in the access log, and the log verified.

Every page the journey visits passes axe-core (WCAG 2.2 AA): the test keeps a list of the addresses
the browser loaded and checks each one was checked. With LEDER_SCREENSHOTS=docs/screenshots, it
writes the README's screenshots of each role's main page there."""

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.web import assert_accessible, shoot, sign_out
from tests.web.conftest import WebStack
from tests.web.test_ig_partner import fill, form_values, nhs_number, send

SHOTS = Path(os.environ.get("LEDER_SCREENSHOTS") or "/tmp/shots/journey")
REVIEWER = ("jo.reviewer", "Jo Ahmed")
SENIOR = ("sam.senior", "Sam Patel")
REFERENCE = re.compile(r"LDR-\d{4}-\d{5}")
MINIMUM = (
    "Family or carer contact",
    "GP contact or GP records",
    "Contact with another professional",
    "Pen portrait",
    "Quality of care judgement",
)
PEN_PORTRAIT = "Margaret loved the seaside, bus rides and her Saturday choir."


@dataclass
class Journey:
    """The browser's page, with every address it loaded and every one axe checked."""

    stack: WebStack
    page: Page
    loaded: list[str] = field(default_factory=list)
    checked: set[str] = field(default_factory=set)
    case_id: str = ""
    reference: str = ""
    panel_id: str = ""

    def check(self, shot: str | None = None) -> None:
        """axe-core on the page as it stands; a screenshot of it for the README when named."""
        self.page.wait_for_load_state()
        assert_accessible(self.page)
        self.checked.add(self.page.url)
        if shot:
            shoot(self.page, SHOTS / f"{shot}.png")

    def as_(self, sub: str) -> None:
        if any(c["name"] == "leder_session" for c in self.page.context.cookies()):
            sign_out(self.page)
            self.check()
        self.page.goto(f"{self.stack.web}/sign-in")
        self.check()
        self.page.locator(f"input[name=person][value='{sub}']").check()
        self.page.get_by_role("button", name="Sign in").click()
        self.check()

    def banner(self) -> Any:
        return self.page.locator(".nhsuk-notification-banner")


def until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """The services learn of each other's events through the broker: wait until they have."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def fill_date(page: Page, legend: str, day: date) -> None:
    group = page.get_by_role("group", name=legend)
    group.get_by_label("Day").fill(str(day.day))
    group.get_by_label("Month").fill(str(day.month))
    group.get_by_label("Year").fill(str(day.year))


def save(page: Page, button: str = "Save") -> int:
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=button).click()
    response = navigation.value
    return response.status if response else 0


@pytest.fixture(scope="module")
def journey(web_stack: WebStack, browser: Browser) -> Iterator[Journey]:
    # The LAC registered and trained these two before the day began (their pages have their own tests).
    for sub, name, senior in ((*REVIEWER, False), (*SENIOR, True)):
        made = web_stack.call(
            "POST",
            "allocation",
            "/reviewers",
            "lac",
            json={
                "user_id": sub,
                "name": name,
                "organisations": ["Sirona Care"],
                "senior": senior,
                "capacity": 5,
            },
        )
        web_stack.call(
            "POST",
            "allocation",
            f"/reviewers/{made['reviewer_id']}/training",
            "lac",
            json={"completed_on": date.today().isoformat()},
        )
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    trip = Journey(web_stack, page)
    page.on("load", lambda p: trip.loaded.append(p.url))
    try:
        yield trip
    finally:
        context.close()


def test_1_partner_staff_notify_the_death_through_the_form(journey: Journey) -> None:
    journey.as_("gp.lee")
    expect(journey.page.get_by_role("heading", level=1)).to_have_text("Notify a death")
    journey.check("partner-notify")
    fill(journey.page, form_values("Margaret", "Okonjo", nhs_number("943476592")))
    send(journey.page)
    panel = journey.page.locator(".nhsuk-panel")
    expect(panel).to_contain_text("Case opened")
    journey.check()
    found = REFERENCE.search(panel.inner_text())
    assert found, panel.inner_text()
    journey.reference = found.group(0)
    cases = journey.stack.call(
        "GET", "notification", "/cases", "lac", params={"reference": journey.reference}
    )
    journey.case_id = cases["cases"][0]["case_id"]


def test_2_the_lac_sees_it_in_the_queue_reads_the_personal_details_and_allocates_it(
    journey: Journey,
) -> None:
    page, reference = journey.page, journey.reference
    journey.as_("lac.alex")
    journey.check("lac-home")
    page.get_by_role("link", name="Allocation queue").first.click()
    until(
        "the case in the queue",
        lambda: page.reload() and page.get_by_role("link", name=f"Allocate {reference}").count() == 1,
    )
    journey.check()
    page.get_by_role("link", name=reference, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(reference)
    journey.check()
    page.get_by_role("link", name="See personal details").click()
    journey.check()
    page.get_by_label("Why do you need to see the personal details?").fill("To write to the family")
    page.get_by_role("button", name="Show personal details").click()
    expect(page.get_by_role("main")).to_contain_text("Okonjo")
    journey.check()

    page.goto(f"{journey.stack.web}/lac/queue")
    journey.check()
    page.get_by_role("link", name=f"Allocate {reference}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Allocate the case")
    journey.check()
    first = page.locator("input[name=pair]").first
    label = page.locator(f"label[for='{first.get_attribute('id')}']").inner_text()
    assert label.startswith(f"{REVIEWER[1]} with {SENIOR[1]}"), label
    first.check()
    page.get_by_role("button", name="Allocate").click()
    expect(journey.banner()).to_contain_text(f"Case allocated to {REVIEWER[1]}")
    journey.check()


def test_3_the_reviewer_tries_too_early_then_records_the_minimum_and_submits(journey: Journey) -> None:
    page, reference = journey.page, journey.reference
    journey.as_(REVIEWER[0])
    row = page.get_by_role("row").filter(has_text=reference)
    until("the review started", lambda: page.reload() and row.count() == 1)
    journey.check()
    page.get_by_role("link", name=reference).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Review of {reference}")
    journey.check()

    assert save(page, "Submit for quality assurance") == 422
    listed = page.locator(".nhsuk-error-summary__list a").all_inner_texts()
    assert len(listed) == len(MINIMUM) and all(any(i.startswith(m) for i in listed) for m in MINIMUM), listed
    journey.check()

    contacted = date.today() - timedelta(days=1)
    for task, status, extra in (
        ("Family or carer contact", "Completed", {}),
        ("GP contact or GP records", "Completed", {}),
        (
            "Contact with another professional",
            "Completed",
            {"Their role": "Ward manager", "Their organisation": "Southmead Hospital"},
        ),
    ):
        page.get_by_role("link", name=task, exact=True).click()
        journey.check()
        page.get_by_label(status, exact=True).check()
        fill_date(page, "Date of the contact", contacted)
        for label, value in extra.items():
            page.get_by_label(label).fill(value)
        assert save(page) == 200
        journey.check()
    page.get_by_role("link", name="Pen portrait", exact=True).click()
    journey.check()
    page.get_by_label("Describe the person").fill(PEN_PORTRAIT)
    assert save(page) == 200
    journey.check()
    page.get_by_role("link", name="Quality of care judgement", exact=True).click()
    journey.check()
    page.locator("#phase").check()
    page.locator("input[name=grade]").nth(1).check()
    page.get_by_label("Why you graded it so").fill("Her care at home was coordinated.")
    assert save(page) == 200
    for label in MINIMUM:
        item = page.locator(".nhsuk-task-list__item", has_text=label)
        expect(item.locator(".nhsuk-task-list__status")).to_have_text("Completed")
    journey.check("reviewer-task-list")
    assert save(page, "Submit for quality assurance") == 200
    expect(journey.banner()).to_contain_text("Review submitted")
    journey.check()


def test_4_the_lac_schedules_a_panel_and_adds_the_review(journey: Journey) -> None:
    page, reference = journey.page, journey.reference
    journey.as_("lac.alex")
    page.get_by_role("link", name="QA panels").first.click()
    until("the review awaiting QA", lambda: page.reload() and page.get_by_role("row", name=reference).count())
    journey.check()
    held_on = date.today()
    page.get_by_label("Day").fill(str(held_on.day))
    page.get_by_label("Month").fill(str(held_on.month))
    page.get_by_label("Year").fill(str(held_on.year))
    page.get_by_role("button", name="Schedule panel").click()
    when = f"{held_on.day} {held_on:%B %Y}"
    expect(page.get_by_role("alert")).to_contain_text(f"QA panel scheduled for {when}")
    journey.check()
    page.get_by_label(f"Panel for {reference}").select_option(label=f"{when} (0 on the agenda)")
    page.get_by_role("button", name=f"Add {reference} to panel").click()
    expect(page.get_by_role("alert")).to_contain_text(f"{reference} added to the QA panel on {when}")
    journey.check()
    page.get_by_role("link", name=when).click()
    journey.panel_id = page.url.rsplit("/", 1)[1]
    journey.check()


def test_5_the_panel_returns_it_with_comments(journey: Journey) -> None:
    page, reference = journey.page, journey.reference
    journey.as_("qa.priya")
    page.goto(f"{journey.stack.web}/qa/panels/{journey.panel_id}")
    journey.check()
    page.get_by_role("link", name=reference).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Review of {reference}")
    expect(page.get_by_text(PEN_PORTRAIT)).to_be_visible()
    journey.check("qa-review")
    page.get_by_label("What the reviewer needs to do").fill(
        "Say what the family told you about her last week."
    )
    page.get_by_role("button", name="Return for rework").click()
    expect(page.get_by_role("alert")).to_contain_text(f"{reference} returned to the reviewer for rework")
    journey.check()


def test_6_the_reviewer_reads_the_comments_fixes_the_review_and_resubmits(journey: Journey) -> None:
    page, reference = journey.page, journey.reference
    journey.as_(REVIEWER[0])
    row = page.get_by_role("row").filter(has_text=reference)
    until("the review back with the reviewer", lambda: page.reload() and "Returned by QA" in row.inner_text())
    journey.check()
    page.get_by_role("link", name=reference).click()
    expect(page.get_by_role("main")).to_contain_text("Say what the family told you about her last week.")
    journey.check()
    page.get_by_role("link", name="Pen portrait", exact=True).click()
    journey.check()
    page.get_by_label("Describe the person").fill(
        PEN_PORTRAIT + " Her sister said she was tired but cheerful in her last week."
    )
    assert save(page) == 200
    journey.check()
    page.get_by_role("link", name="Learning (optional)").click()
    journey.check()
    page.get_by_label("Sepsis", exact=True).check()
    page.get_by_label("What others can learn", exact=False).fill("Screen for sepsis at every home visit.")
    assert save(page) == 200
    journey.check()
    assert save(page, "Submit for quality assurance") == 200
    expect(journey.banner()).to_contain_text("Review submitted")
    journey.check()


def test_7_the_lac_puts_it_on_the_panel_again_and_the_panel_approves_it(journey: Journey) -> None:
    page, reference = journey.page, journey.reference
    journey.as_("lac.alex")
    page.goto(f"{journey.stack.web}/lac/panels")
    until(
        "the review awaiting QA again",
        lambda: page.reload() and page.get_by_role("row", name=reference).count(),
    )
    journey.check()
    choice = page.get_by_label(f"Panel for {reference}")
    choice.select_option(index=1)
    page.get_by_role("button", name=f"Add {reference} to panel").click()
    expect(page.get_by_role("alert")).to_contain_text(f"{reference} added to the QA panel")
    journey.check()

    journey.as_("qa.priya")
    page.goto(f"{journey.stack.web}/qa/reviews/{journey.case_id}?panel={journey.panel_id}")
    journey.check()
    page.locator("#quality_rating-4").check()
    page.get_by_label("Sepsis", exact=True).check()
    page.get_by_role("button", name="Approve and close the case").click()
    expect(page.get_by_role("alert")).to_contain_text(f"{reference} approved and the case closed")
    journey.check()


def test_8_the_governance_group_sees_the_months_kpis_and_agrees_an_action(journey: Journey) -> None:
    page, reference = journey.page, journey.reference
    journey.as_("gov.sam")
    page.get_by_role("link", name="Reports").first.click()
    journey.check()
    page.locator(
        "form", has=page.get_by_role("heading", name="Key performance indicators for a month")
    ).get_by_role("button", name="Show report").click()
    expect(page.locator(".leder-report svg").first).to_be_visible()
    journey.check("governance-report")
    page.get_by_role("link", name="Actions").first.click()
    journey.check()
    page.get_by_role("button", name="Agree an action").click()
    journey.check()
    page.get_by_label("What is to be done").fill("Sepsis screening at every home visit")
    page.get_by_label("Organisation").fill("Sirona Care")
    page.get_by_label("Lead", exact=True).fill("Head of community nursing")
    due = date.today() + timedelta(days=90)
    page.get_by_label("Day").fill(str(due.day))
    page.get_by_label("Month").fill(str(due.month))
    page.get_by_label("Year").fill(str(due.year))
    page.get_by_label("Cases this action comes from (optional)").fill(reference)
    page.get_by_label("Sepsis").check()
    page.get_by_role("button", name="Agree action").click()
    expect(page.get_by_role("alert")).to_contain_text("Action agreed")
    journey.check()


def test_9_the_ig_officer_sees_every_step_the_access_and_a_verified_log(journey: Journey) -> None:
    page, reference = journey.page, journey.reference
    journey.as_("ig.jo")
    page.get_by_label("Case reference or case id").fill(reference)
    page.get_by_role("button", name="Find case").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Timeline")
    steps = (
        "Case opened",
        "Personal details viewed",
        "Reviewer allocated",
        "Review submitted for QA",
        "Review returned by QA",
        "Review approved by QA",
        "Case closed",
    )

    def all_there() -> bool:
        page.reload()
        text = page.locator("main table").inner_text()
        return all(step.lower() in text.lower() for step in steps)

    until("every step on the timeline", all_there)
    journey.check("ig-timeline")
    page.get_by_role("link", name="Access log", exact=True).click()
    journey.check()
    page.get_by_label("Case reference or case id").fill(reference)
    page.get_by_role("button", name="Show entries").click()
    viewed = page.locator("tbody tr", has_text="Viewed personal details")
    expect(viewed).to_have_count(1)
    expect(viewed).to_contain_text("Local Area Contact")
    expect(viewed).to_contain_text("To write to the family")
    journey.check()
    page.get_by_role("link", name="Log verification", exact=True).click()
    expect(page.locator(".nhsuk-summary-list").first).to_contain_text("Verified")
    journey.check()


def test_every_page_the_journey_loaded_passed_axe(journey: Journey) -> None:
    unchecked = [url for url in dict.fromkeys(journey.loaded) if url not in journey.checked]
    assert journey.loaded and not unchecked, f"pages loaded but never checked with axe: {unchecked}"
