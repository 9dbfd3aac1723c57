"""The LAC's reviewer pages in Chromium, on the whole system: registering a reviewer (refused on the
fields first, nothing written), the list's verdicts (training missing, cannot take a case), training,
a standing conflict, deactivation and reactivation, each as the allocation service records it; the
new reviewer can then sign in. Registering works with the keyboard alone; the list filters and sorts
with plain links. The tests run in order: the journey's reviewer is used by the later ones."""

import re
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from services.allocation import domain
from tests.support.notifications import notification
from tests.support.web import assert_accessible, shoot, sign_in, sign_out
from tests.web.conftest import WebStack

SHOTS = Path("/tmp/shots/lac-reviewers")
SUB, NAME = "jo.taylor", "Jo Taylor"


def subs(stack: WebStack) -> list[str]:
    return [r["sub"] for r in stack.call("GET", "allocation", "/reviewers", "lac")["reviewers"]]


def look(page: Page, name: str) -> None:
    """Every page and state visited: no axe violation, and a screenshot to look at."""
    assert_accessible(page)
    shoot(page, SHOTS / f"{name}.png")


def row_of(page: Page, name: str) -> Any:
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def banner(page: Page) -> Any:
    return page.locator(".nhsuk-notification-banner")


def sort_by(page: Page, column: str, order: str) -> None:
    header = page.get_by_role("columnheader", name=column)
    header.get_by_role("link", name=re.compile(f"sort {order}$")).click()


def fill_date(page: Page, key: str, day: date | tuple[str, str, str]) -> None:
    parts = (str(day.day), str(day.month), str(day.year)) if isinstance(day, date) else day
    for part, value in zip(("day", "month", "year"), parts, strict=True):
        page.locator(f"#{key}-{part}").fill(value)


def expect_error(page: Page, field_id: str, message: str) -> None:
    """The message in the summary, linking to the field, and on the field itself."""
    summary = page.locator(".nhsuk-error-summary")
    expect(summary.get_by_role("link", name=message)).to_have_attribute("href", f"#{field_id}")
    expect(page.locator(f"#{field_id}-error")).to_contain_text(message)
    assert page.locator(f"#{field_id}").count() == 1


def test_lac_registers_a_reviewer_after_fixing_errors_and_keeps_their_record(
    web_stack: WebStack, page: Page
) -> None:
    base = web_stack.web
    sign_in(page, base, "lac.alex")
    page.goto(f"{base}/lac/reviewers")
    expect(page.get_by_role("heading", level=1)).to_have_text("Reviewers")
    look(page, "01-list-empty")

    # Given an incomplete form: errors on the fields, what was typed kept, nothing written.
    before = subs(web_stack)
    page.get_by_role("button", name="Register a reviewer").click()
    look(page, "02-register")
    page.get_by_label("Sign-in ID").fill(SUB)
    page.get_by_label("Employing organisations").fill("North Bristol NHS Trust\nSirona care & health")
    page.get_by_role("radio", name="No").check()
    page.get_by_label("Capacity").fill("ten")
    page.get_by_role("button", name="Register reviewer").click()
    expect(page).to_have_title(re.compile("^Error: Register a reviewer"))
    expect_error(page, "name", "Enter their full name")
    expect_error(page, "capacity", "Capacity must be a whole number, like 4")
    expect(page.get_by_label("Sign-in ID")).to_have_value(SUB)
    expect(page.get_by_label("Capacity")).to_have_value("ten")
    expect(page.get_by_label("Employing organisations")).to_have_value(
        "North Bristol NHS Trust\nSirona care & health"
    )
    expect(page.get_by_role("radio", name="No")).to_be_checked()
    look(page, "03-register-errors")
    assert subs(web_stack) == before

    # The summary's link takes you to the field.
    page.get_by_role("link", name="Enter their full name").click()
    expect(page.get_by_label("Full name")).to_be_focused()
    page.get_by_label("Full name").fill(NAME)
    page.get_by_label("Capacity").fill("3")
    page.get_by_role("button", name="Register reviewer").click()
    expect(banner(page)).to_contain_text(f"{NAME} is registered")
    expect(page.get_by_role("heading", level=1)).to_have_text(NAME)
    look(page, "04-registered")
    assert SUB in subs(web_stack)
    reviewer_url = page.url

    # Untrained: the list says so, as the service does.
    page.get_by_role("link", name="Back to reviewers").click()
    row = row_of(page, NAME)
    expect(row).to_contain_text("Training missing")
    expect(row).to_contain_text("No: no training recorded")
    expect(row).to_contain_text("0 of 3")
    expect(row).to_contain_text("North Bristol NHS Trust, Sirona care & health")
    look(page, "05-list-untrained")

    # Training: a date that is not real, then one in the future (the service's refusal), then today.
    page.get_by_role("link", name=NAME, exact=True).click()
    page.get_by_role("link", name=f"Record training for {NAME}").click()
    # How long training lasts is allocation's rule, read from the page as the service states it.
    stated = re.search(
        r"Training is valid for (\d+) months\.",
        page.locator("p", has_text="Training is valid for").inner_text(),
    )
    assert stated is not None and int(stated[1]) == domain.TRAINING_VALID_MONTHS
    look(page, "06-training")
    fill_date(page, "completed_on", ("31", "2", "2026"))
    page.get_by_role("button", name="Record training").click()
    expect_error(page, "completed_on", "The date they completed the training must be a real date")
    expect(page.locator("#completed_on-day")).to_have_value("31")
    look(page, "07-training-not-real")
    fill_date(page, "completed_on", date.today() + timedelta(days=2))
    page.get_by_role("button", name="Record training").click()
    expect_error(page, "completed_on", "Training cannot be completed in the future")
    look(page, "08-training-future")
    fill_date(page, "completed_on", date.today())
    page.get_by_role("button", name="Record training").click()
    expect(banner(page)).to_contain_text(f"Training recorded for {NAME}")
    facts = page.locator(".nhsuk-summary-list")
    expect(facts).to_contain_text(date.today().strftime("%B %Y"))
    expect(facts.locator("div", has_text="Can take a case today")).to_contain_text("Yes")
    look(page, "09-trained")
    page.goto(f"{base}/lac/reviewers")
    expect(row_of(page, NAME).locator("td").nth(5)).to_have_text("Can take a case today Yes")

    # A standing conflict: nothing chosen is refused; then an organisation by name.
    page.goto(reviewer_url)
    page.get_by_role("link", name=f"Record a standing conflict of interest for {NAME}").click()
    page.get_by_role("button", name="Record conflict").click()
    expect_error(page, "kind", "Select whether the conflict is with an organisation or a person")
    expect_error(page, "name", "Enter the name of the organisation or person")
    look(page, "10-conflict-errors")
    page.get_by_role("radio", name="An organisation").check()
    page.get_by_label("Name of the organisation or person").fill("Weston General Hospital")
    page.get_by_role("button", name="Record conflict").click()
    expect(banner(page)).to_contain_text("Standing conflict with Weston General Hospital recorded")
    conflicts = page.get_by_role("table", name=f"Standing conflicts of interest of {NAME}")
    expect(conflicts).to_contain_text("Weston General Hospital")
    assert web_stack.call("GET", "allocation", f"/reviewers/{reviewer_url.rsplit('/', 1)[1]}", "lac")[
        "standing_conflicts"
    ] == [{"kind": "organisation", "name": "Weston General Hospital"}]
    look(page, "11-conflict-recorded")

    # Deactivation asks why first; then the reviewer shows deactivated everywhere.
    page.get_by_role("link", name=f"Deactivate {NAME}").click()
    look(page, "12-deactivate")
    page.get_by_role("button", name="Deactivate reviewer").click()
    expect_error(page, "reason", "Enter why you are deactivating them")
    look(page, "13-deactivate-error")
    page.get_by_label("Why are you deactivating them?").fill("On long-term leave from May")
    page.get_by_role("button", name="Deactivate reviewer").click()
    expect(banner(page)).to_contain_text(f"{NAME} is deactivated")
    expect(page.locator(".nhsuk-summary-list .nhsuk-tag").first).to_have_text("Deactivated")
    look(page, "14-deactivated")
    page.goto(f"{base}/lac/reviewers")
    page.get_by_role("link", name="Deactivated (status)").click()
    expect(row_of(page, NAME)).to_contain_text("No: inactive")
    expect(row_of(page, NAME).locator(".nhsuk-tag")).to_have_text("Deactivated")
    look(page, "15-list-deactivated")
    page.get_by_role("link", name="Active (status)").click()
    expect(row_of(page, NAME)).to_have_count(0)

    # Reactivation.
    page.goto(reviewer_url)
    page.get_by_role("button", name=f"Reactivate {NAME}").click()
    expect(banner(page)).to_contain_text(f"{NAME} is active again")
    expect(page.locator(".nhsuk-summary-list .nhsuk-tag").first).to_have_text("Active")
    look(page, "16-reactivated")

    # The same sign-in ID twice: the service's 409 on the field, nothing written.
    page.goto(f"{base}/lac/reviewers/new")
    page.get_by_label("Sign-in ID").fill(SUB)
    page.get_by_label("Full name").fill("Jo Taylor again")
    page.get_by_label("Employing organisations").fill("Sirona care & health")
    page.get_by_role("radio", name="Yes").check()
    page.get_by_label("Capacity").fill("2")
    page.get_by_role("button", name="Register reviewer").click()
    expect_error(page, "user_id", f"A reviewer already signs in as {SUB}")
    look(page, "17-register-taken")
    assert subs(web_stack).count(SUB) == 1

    # The reviewer the LAC registered can sign in, as a reviewer.
    sign_out(page)
    page.goto(f"{base}/sign-in")
    expect(page.get_by_role("radio", name=NAME)).to_have_count(1)
    sign_in(page, base, SUB)
    expect(page.locator(".nhsuk-header__account")).to_contain_text(f"{NAME}, Reviewer")
    assert page.url.endswith("/reviews")


def test_lac_registers_a_reviewer_with_the_keyboard_alone(web_stack: WebStack, page: Page) -> None:
    base = web_stack.web
    sign_in(page, base, "lac.alex")
    page.goto(f"{base}/lac/reviewers/new")
    for _ in range(40):
        if page.evaluate("document.activeElement.id") == "user_id":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "user_id"
    page.keyboard.type("kit.senior")
    page.keyboard.press("Tab")
    page.keyboard.type("Kit Senior")
    page.keyboard.press("Tab")
    page.keyboard.type("Sirona care & health")
    page.keyboard.press("Enter")
    page.keyboard.type("University of Bristol")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # the first radio: Yes
    page.keyboard.press("Tab")
    page.keyboard.type("4")
    page.keyboard.press("Enter")
    expect(banner(page)).to_contain_text("Kit Senior is registered")
    facts = page.locator(".nhsuk-summary-list")
    expect(facts).to_contain_text("Sirona care & health, University of Bristol")
    expect(facts.locator("div", has_text="Senior reviewer").first).to_contain_text("Yes")
    look(page, "20-keyboard-registered")


def test_the_list_filters_and_sorts_with_plain_links(web_stack: WebStack, page: Page) -> None:
    base = web_stack.web
    sign_in(page, base, "lac.alex")
    page.goto(f"{base}/lac/reviewers")
    names = page.locator("tbody tr td:first-child a")
    expect(names).to_have_text(["Jo Taylor", "Kit Senior"])
    sort_by(page, "Name", "descending")
    expect(names).to_have_text(["Kit Senior", "Jo Taylor"])
    page.get_by_role("link", name="Senior reviewers (seniority)").click()
    expect(names).to_have_text(["Kit Senior"])
    expect(page.locator("caption")).to_contain_text("1 of 2 reviewers (senior reviewers)")
    expect(row_of(page, "Kit Senior")).to_contain_text("supporting 0")
    look(page, "21-list-seniors")
    page.get_by_role("link", name="All (seniority)").click()
    sort_by(page, "Training valid until", "ascending")
    expect(names).to_have_text(["Kit Senior", "Jo Taylor"])
    look(page, "22-list-by-training")


def eventually(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_reviewers_page_lists_their_cases_by_reference(web_stack: WebStack, page: Page) -> None:
    # Given a case allocated to Jo Taylor, supported by Kit Senior (trained first: the service requires it).
    people = {r["sub"]: r for r in web_stack.call("GET", "allocation", "/reviewers", "lac")["reviewers"]}
    jo, kit = people[SUB]["reviewer_id"], people["kit.senior"]["reviewer_id"]
    today = {"completed_on": date.today().isoformat()}
    web_stack.call("POST", "allocation", f"/reviewers/{kit}/training", "lac", json=today)
    body = notification(**{"person.family_name": "Reviewerspage"})
    case_id = web_stack.call(
        "POST", "notification", "/notifications", "partner_system", sub="Southmead Hospital", json=body
    )["case_id"]
    queued = eventually(
        "the case in the allocation queue",
        lambda: next(
            (
                c
                for c in web_stack.call("GET", "allocation", "/allocation-queue", "lac")["cases"]
                if c["case_id"] == case_id and c["reference"]
            ),
            None,
        ),
    )
    web_stack.call(
        "POST",
        "allocation",
        f"/cases/{case_id}/allocation",
        "lac",
        json={"reviewer_id": jo, "senior_reviewer_id": kit},
    )

    sign_in(page, web_stack.web, "lac.alex")
    page.goto(f"{web_stack.web}/lac/reviewers")
    expect(row_of(page, NAME)).to_contain_text("1 of 3")
    expect(row_of(page, "Kit Senior")).to_contain_text("supporting 1")
    page.get_by_role("link", name=NAME, exact=True).click()
    cases = page.get_by_role("table", name=f"Cases {NAME} has now")
    link = cases.get_by_role("link", name=queued["reference"])
    expect(link).to_have_attribute("href", f"/lac/cases/{case_id}")
    expect(cases).to_contain_text("Reviewer")
    look(page, "30-reviewer-with-case")
    page.goto(f"{web_stack.web}/lac/reviewers/{kit}")
    expect(page.get_by_role("table", name="Cases Kit Senior has now")).to_contain_text("Senior reviewer")
    look(page, "31-senior-with-case")
