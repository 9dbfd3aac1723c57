"""The QA panel's, the LAC's panel and the Governance Group's pages in Chromium, on the whole system: a
review submitted through the APIs is put on a panel by the LAC, returned and then approved by the QA
panel (once with the keyboard alone), and the Governance Group reads the month's KPI report and follows
an action from agreement to completion. Every page, in every state visited, passes axe-core."""

import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.notifications import notification
from tests.support.web import assert_accessible, shoot, sign_in
from tests.web.conftest import WebStack

SHOTS = Path("/tmp/shots/qa")
PEN_PORTRAIT = "Zoë loved the Downs on a Sunday, her choir and her sister's Friday visits."
REVIEWER, SENIOR = ("ruth.okafor", "Ruth Okafor"), ("kwame.mensah", "Kwame Mensah")
MINIMUM: list[tuple[str, dict[str, Any]]] = [
    ("contacts", {"party": "family", "status": "completed", "on": "2026-10-20"}),
    ("contacts", {"party": "gp", "status": "completed", "on": "2026-10-21"}),
    (
        "contacts",
        {
            "party": "professional",
            "status": "completed",
            "on": "2026-10-22",
            "role": "learning disability nurse",
            "organisation": "Sirona Care",
        },
    ),
    ("records", {"source": "gp", "received_on": "2026-10-23"}),
    ("pen-portrait", {"text": PEN_PORTRAIT}),
    ("care-judgements", {"phase": "final_illness", "grade": 4, "rationale": "Slow to spot sepsis."}),
    ("learning", {"text": "Sepsis screening on admission", "themes": ["sepsis", "communication"]}),
    ("recommendations", {"what": "Use the sepsis tool on ward 4", "organisation": "Southmead Hospital"}),
    ("cause-of-death", {"cause": "Sepsis", "preventable_or_treatable": True, "age_at_death": 65}),
]


def until(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached after {timeout}s: {what}; last {found!r}")
        time.sleep(0.3)


def awaiting(stack: WebStack, case_id: str) -> dict[str, Any] | None:
    reviews = stack.call("GET", "governance", "/qa/awaiting", "lac")["reviews"]
    return next((r for r in reviews if r["case_id"] == case_id), None)


@pytest.fixture(scope="module")
def scene(web_stack: WebStack) -> dict[str, Any]:
    """A submitted review waiting for QA, made through the services' APIs as each person would."""
    call = web_stack.call
    ids = {}
    for (sub, name), senior in ((REVIEWER, False), (SENIOR, True)):
        made = call(
            "POST",
            "allocation",
            "/reviewers",
            "lac",
            json={
                "user_id": sub,
                "name": name,
                "organisations": ["Sirona Care"],
                "senior": senior,
                "capacity": 3,
            },
        )
        ids[sub] = made["reviewer_id"]
        training = {"completed_on": date.today().isoformat()}
        call("POST", "allocation", f"/reviewers/{ids[sub]}/training", "lac", json=training)
    body = notification()
    call("POST", "notification", "/notifications", "partner_system", sub="southmead", json=body)
    path = f"/notifications/{body['notification_id']}"
    case_id = until(
        lambda: call("GET", "notification", path, "partner_system", sub="southmead").get("case_id"),
        what="the case opened",
    )
    until(
        lambda: (
            case_id in [c["case_id"] for c in call("GET", "allocation", "/allocation-queue", "lac")["cases"]]
        ),
        what="the case queued",
    )
    pair = {"reviewer_id": ids[REVIEWER[0]], "senior_reviewer_id": ids[SENIOR[0]]}
    call("POST", "allocation", f"/cases/{case_id}/allocation", "lac", json=pair)
    until(lambda: _review_started(web_stack, case_id), what="the review started")
    for kind, record in MINIMUM:
        call("POST", "review", f"/reviews/{case_id}/{kind}", "reviewer", sub=REVIEWER[0], json=record)
    call("POST", "review", f"/reviews/{case_id}/submission", "reviewer", sub=REVIEWER[0])
    waiting = until(lambda: awaiting(web_stack, case_id), what="the review awaiting QA")
    return {"case_id": case_id, "reference": waiting["reference"]}


def _review_started(stack: WebStack, case_id: str) -> bool:
    try:
        stack.call("GET", "review", f"/reviews/{case_id}", "lac")
    except AssertionError:
        return False
    return True


def errors_on(page: Page, field: str, message: str) -> None:
    """The error is in the summary, linking to the field, and on the field itself."""
    summary = page.locator(".nhsuk-error-summary")
    expect(summary.get_by_role("link", name=message)).to_have_attribute("href", f"#{field}")
    expect(page.locator(f"#{field}-error")).to_contain_text(message)
    assert page.locator(f"#{field}").count() == 1


def visit(page: Page, name: str) -> None:
    assert_accessible(page)
    shoot(page, SHOTS / f"{name}.png")


def test_the_lac_schedules_a_panel_and_puts_the_waiting_review_on_its_agenda(
    web_stack: WebStack, scene: dict[str, Any], page: Page
) -> None:
    sign_in(page, web_stack.web, "lac.alex")
    page.goto(f"{web_stack.web}/lac/panels")
    expect(page.get_by_role("heading", level=1)).to_have_text("QA panels")
    row = page.get_by_role("row", name=scene["reference"])
    expect(row).to_contain_text(REVIEWER[1])
    expect(row).to_contain_text("Initial review")
    expect(row).to_contain_text("No upcoming panel")
    visit(page, "lac-panels")

    # A date that is not real: the error on the field, what was typed kept, nothing scheduled.
    page.get_by_label("Day").fill("31")
    page.get_by_label("Month").fill("2")
    page.get_by_label("Year").fill("2027")
    page.get_by_role("button", name="Schedule panel").click()
    errors_on(page, "held_on", "The date of the panel must be a real date")
    expect(page.get_by_label("Day")).to_have_value("31")
    expect(page.get_by_text("No QA panel has been scheduled yet.")).to_be_visible()
    assert web_stack.call("GET", "governance", "/qa-panels", "lac")["panels"] == []
    visit(page, "lac-panels-date-not-real")

    held_on = date.today()  # the panel meets today: the service takes no decision before it meets
    page.get_by_label("Day").fill(str(held_on.day))
    page.get_by_label("Month").fill(str(held_on.month))
    page.get_by_label("Year").fill(str(held_on.year))
    page.get_by_role("button", name="Schedule panel").click()
    when = f"{held_on.day} {held_on:%B %Y}"
    expect(page.get_by_role("alert")).to_contain_text(f"QA panel scheduled for {when}")
    expect(page.get_by_role("table").first.get_by_role("row", name=when)).to_contain_text("Upcoming")
    visit(page, "lac-panels-scheduled")

    # Adding without choosing a panel: the error on that row's choice.
    choice = f"panel-{scene['case_id']}"
    page.get_by_role("button", name=f"Add {scene['reference']} to panel").click()
    errors_on(page, choice, "Select the QA panel to add this review to")
    visit(page, "lac-panels-no-panel-chosen")
    page.get_by_label(f"Panel for {scene['reference']}").select_option(label=f"{when} (0 on the agenda)")
    page.get_by_role("button", name=f"Add {scene['reference']} to panel").click()
    expect(page.get_by_role("alert")).to_contain_text(f"{scene['reference']} added to the QA panel on {when}")
    expect(page.get_by_text("No review is waiting for QA.")).to_be_visible()
    visit(page, "lac-panels-added")
    page.get_by_role("link", name=when).click()
    expect(page.get_by_role("row", name=scene["reference"])).to_contain_text("Awaiting QA")
    visit(page, "lac-panel-agenda")
    scene["panel_on"] = when
    scene["panel_id"] = page.url.rsplit("/", 1)[1]


def test_the_qa_panel_reads_the_report_returns_it_for_rework_then_approves_it_with_the_keyboard(
    web_stack: WebStack, scene: dict[str, Any], page: Page
) -> None:
    reference, case_id, panel_id = scene["reference"], scene["case_id"], scene["panel_id"]
    sign_in(page, web_stack.web, "qa.priya")
    expect(page).to_have_url(f"{web_stack.web}/qa")
    expect(page.get_by_role("heading", name=f"Next panel: {scene['panel_on']}")).to_be_visible()
    visit(page, "qa-home")
    page.get_by_role("link", name=scene["panel_on"]).click()
    visit(page, "qa-agenda")
    page.get_by_role("link", name=reference).click()

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Review of {reference}")
    expect(page.get_by_text(PEN_PORTRAIT)).to_be_visible()
    expect(page.get_by_role("row", name="Final illness")).to_contain_text("Care fell short")
    expect(page.get_by_role("link", name="Print this review")).to_be_visible()
    visit(page, "qa-review")
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Return for rework")).to_be_hidden()
    expect(page.get_by_text(PEN_PORTRAIT)).to_be_visible()
    shoot(page, SHOTS / "qa-review-print.png")
    page.emulate_media(media="screen")

    page.get_by_role("button", name="Return for rework").click()
    errors_on(page, "comments", "A return for rework needs the panel's comments")
    visit(page, "qa-review-return-without-comments")
    page.get_by_label("What the reviewer needs to do").fill("Say more about the GP's part in the last month.")
    page.get_by_role("button", name="Return for rework").click()
    expect(page).to_have_url(f"{web_stack.web}/qa/panels/{panel_id}")
    expect(page.get_by_role("alert")).to_contain_text(f"{reference} returned to the reviewer for rework")
    expect(page.get_by_role("row", name=reference)).to_contain_text("Returned by QA")
    visit(page, "qa-agenda-returned")

    # The reviewer resubmits (through the API); the LAC puts it on the panel again.
    until(
        lambda: web_stack.call("GET", "review", f"/reviews/{case_id}", "lac")["status"] == "in_progress",
        what="the review back with the reviewer",
    )
    web_stack.call("POST", "review", f"/reviews/{case_id}/submission", "reviewer", sub=REVIEWER[0])
    until(lambda: awaiting(web_stack, case_id), what="the review awaiting QA again")
    agenda = {"case_id": case_id}
    web_stack.call("POST", "governance", f"/qa-panels/{panel_id}/agenda", "lac", json=agenda)

    # The decision with the keyboard alone: Tab to the rating, arrows to 4, a theme, Enter.
    page.goto(f"{web_stack.web}/qa/reviews/{case_id}?panel={panel_id}")
    expect(page.get_by_text("Returned by QA before")).to_be_visible()
    focused = tab_to(page, "quality_rating")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert focused() == "quality_rating-4"
    page.keyboard.press("Tab")
    assert focused() == "themes"
    page.keyboard.press("Space")
    expect(page.get_by_label("Sepsis", exact=True)).to_be_checked()
    tab_to(page, None, button="Approve and close the case")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{web_stack.web}/qa/panels/{panel_id}")
    expect(page.get_by_role("alert")).to_contain_text(f"{reference} approved and the case closed")
    row = page.get_by_role("row", name=reference)
    expect(row).to_contain_text("Approved, case closed")
    expect(row).to_contain_text("Quality rating 4 out of 5")
    visit(page, "qa-agenda-approved")
    decision = web_stack.call("GET", "governance", f"/qa-panels/{panel_id}", "qa_panel")["agenda"][0][
        "decision"
    ]
    assert (decision["outcome"], decision["quality_rating"], decision["themes"]) == (
        "approved",
        4,
        ["sepsis"],
    )


def tab_to(page: Page, element_id: str | None, button: str = "", limit: int = 150) -> Callable[[], str]:
    """Press Tab until the element (by id, or the button by its text) has the focus."""

    def focused() -> str:
        return str(page.evaluate("document.activeElement.id"))

    def on_button() -> bool:
        return bool(page.evaluate("document.activeElement.textContent.trim()") == button)

    for _ in range(limit):
        page.keyboard.press("Tab")
        if (element_id and focused() == element_id) or (button and on_button()):
            return focused
    raise AssertionError(f"Tab never reached {element_id or button}")


def in_card(page: Page, heading: str) -> Locator:
    return page.locator("form", has=page.get_by_role("heading", name=heading))


def test_the_governance_group_reads_the_kpis_and_follows_an_action_to_completion(
    web_stack: WebStack, scene: dict[str, Any], page: Page
) -> None:
    sign_in(page, web_stack.web, "gov.sam")
    expect(page.get_by_role("heading", level=1)).to_have_text("Actions")
    visit(page, "gov-actions-none")

    page.get_by_role("link", name="Reports").click()
    visit(page, "gov-reports")
    in_card(page, "Key performance indicators for a month").get_by_role("button", name="Show report").click()
    report = page.locator(".leder-report")
    expect(report.locator("svg").first).to_be_visible()
    expect(report.get_by_role("heading", level=2).first).to_contain_text("key performance indicators")
    expect(report.locator("table").first).to_be_attached()  # each chart's figures, in a details
    visit(page, "gov-report-kpis")
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download this report as a spreadsheet (CSV)").click()
    download = downloading.value
    assert download.suggested_filename == f"leder-kpis-{date.today():%Y-%m}.csv"
    assert Path(download.path()).read_text().startswith("figure,value")

    page.get_by_role("link", name="Actions").click()
    page.get_by_role("button", name="Agree an action").click()
    visit(page, "gov-new-action")
    page.get_by_label("Organisation").fill("North Bristol NHS Trust")
    page.get_by_label("Lead", exact=True).fill("Director of Nursing")
    page.get_by_label("Day").fill("30")
    page.get_by_label("Month").fill("2")
    page.get_by_label("Year").fill("2027")
    page.get_by_role("button", name="Agree action").click()
    errors_on(page, "what", "Enter what the action is")
    errors_on(page, "due_on", "The date the action is due must be a real date")
    expect(page.get_by_label("Organisation")).to_have_value("North Bristol NHS Trust")
    assert web_stack.call("GET", "governance", "/actions", "governance")["actions"] == []
    visit(page, "gov-new-action-errors")

    due = date.today() + timedelta(days=10)
    page.get_by_label("What is to be done").fill("Sepsis screening tool on every ward")
    page.get_by_label("Day").fill(str(due.day))
    page.get_by_label("Month").fill(str(due.month))
    page.get_by_label("Year").fill(str(due.year))
    # References the governance service has not seen a case opened with: each named on the field,
    # what was typed kept, nothing agreed.
    references = page.get_by_label("Cases this action comes from (optional)")
    references.fill(f"{scene['reference']}, LDR-2020-99998 LDR-2020-99999")
    page.get_by_label("Sepsis").check()
    page.get_by_role("button", name="Agree action").click()
    errors_on(page, "case_references", "No case LDR-2020-99998; no case LDR-2020-99999")
    expect(references).to_have_value(f"{scene['reference']}, LDR-2020-99998 LDR-2020-99999")
    assert web_stack.call("GET", "governance", "/actions", "governance")["actions"] == []
    visit(page, "gov-new-action-unknown-references")
    references.fill(scene["reference"].lower())
    page.get_by_role("button", name="Agree action").click()
    expect(page.get_by_role("alert")).to_contain_text("Action agreed")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sepsis screening tool on every ward")
    facts = page.locator(".nhsuk-summary-list")
    expect(facts).to_contain_text("Due soon")
    expect(facts).to_contain_text("Sepsis")
    visit(page, "gov-action")

    page.get_by_role("button", name="Record progress").click()
    errors_on(page, "update", "Enter the progress made")
    visit(page, "gov-action-progress-empty")
    page.get_by_label("Progress made").fill("Tool piloted on ward 4")
    page.get_by_role("button", name="Record progress").click()
    expect(page.get_by_role("alert")).to_contain_text("Progress recorded")
    expect(page.locator(".leder-history")).to_contain_text("Tool piloted on ward 4")
    expect(page.locator(".leder-history")).to_contain_text("Sam Okafor")
    page.get_by_label("Evidence that it is done").fill("Audit: 97% of admissions screened")
    page.get_by_role("button", name="Complete action").click()
    expect(page.get_by_role("alert")).to_contain_text("Action completed")
    expect(facts).to_contain_text("Completed")
    expect(page.get_by_role("button", name="Complete action")).to_have_count(0)
    visit(page, "gov-action-completed")

    page.get_by_role("link", name="Actions").first.click()
    page.get_by_role("link", name="Completed (1)").click()
    expect(page.get_by_role("row", name="Sepsis screening tool on every ward")).to_contain_text(
        "North Bristol"
    )
    visit(page, "gov-actions-completed")
    expect(page.get_by_role("row", name="Sepsis screening tool on every ward")).to_contain_text(
        scene["reference"]
    )


def test_a_due_date_in_the_past_is_refused_on_its_field(web_stack: WebStack, page: Page) -> None:
    agreed = len(web_stack.call("GET", "governance", "/actions", "governance")["actions"])
    sign_in(page, web_stack.web, "gov.sam")
    page.goto(f"{web_stack.web}/governance/actions/new")
    past = date.today() - timedelta(days=1)
    page.get_by_label("What is to be done").fill("Easy read letters")
    page.get_by_label("Organisation").fill("Sirona Care")
    page.get_by_label("Lead", exact=True).fill("Head of quality")
    page.get_by_label("Day").fill(str(past.day))
    page.get_by_label("Month").fill(str(past.month))
    page.get_by_label("Year").fill(str(past.year))
    page.get_by_role("button", name="Agree action").click()
    errors_on(page, "due_on", "is in the past")
    expect(page.get_by_label("What is to be done")).to_have_value("Easy read letters")
    assert len(web_stack.call("GET", "governance", "/actions", "governance")["actions"]) == agreed
    assert_accessible(page)
