"""Partner staff notify a death through the form (the notification service's refusals on its fields,
nothing written until it is right; also by keyboard alone), and the information governance officer
follows that case through the audit log: its timeline, the case as it stood before and after, who
viewed personal details and why, the log's verification and the case's export with proofs."""

import io
import json
import re
import time
import zipfile
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Page, expect

from events.partner import InvalidNotification, nhs_number_is_valid, parse_notification
from services.web.backend import ApiError
from services.web.forms import Form
from services.web.pages import partner
from tests.support.notifications import notification
from tests.support.web import assert_accessible, shoot, sign_in
from tests.web.conftest import WebStack

SHOTS = Path("/tmp/shots/ig")
LONDON = ZoneInfo("Europe/London")
REFERENCE = re.compile(r"LDR-\d{4}-\d{5}")


def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    """The audit service learns of the others' events through the broker: wait until it has."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, "the services did not catch up in time"
            return found
        time.sleep(0.3)


def answer(stack: WebStack, path: str, service: str, role: str, sub: str, **params: Any) -> httpx.Response:
    """A service's answer as it is, refusals included (`stack.call` insists on success)."""
    token = stack.issuer.mint(sub, role)
    return httpx.get(
        stack.urls[service] + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def nhs_number(start: str) -> str:
    """A valid NHS number beginning with `start` (nine digits): the check digit computed."""
    for last in "0123456789":
        if nhs_number_is_valid(start + last):
            return f"{start[:3]} {start[3:6]} {start[6:]}{last}"
    raise ValueError(f"no valid NHS number starts {start}")


def died() -> date:
    return date.today() - timedelta(days=3)


def form_values(given: str, family: str, number: str) -> dict[str, str]:
    """A whole notification as a person fills it in: field name -> value (radios and lists by code)."""
    death = died()
    return {
        "person-nhs_number": number,
        "person-given_name": given,
        "person-family_name": family,
        "person-date_of_birth-day": "14",
        "person-date_of_birth-month": "5",
        "person-date_of_birth-year": "1961",
        "person-sex": "female",
        "person-ethnicity": "A",
        "person-postcode": "BS10 5NB",
        "person-accommodation_type": "supported_living",
        "death-date_of_death-day": str(death.day),
        "death-date_of_death-month": str(death.month),
        "death-date_of_death-year": str(death.year),
        "death-place_of_death": "hospital",
        "death-place_of_death_organisation": "Southmead Hospital",
        "person-learning_disability": "yes",
        "person-learning_disability_level": "moderate",
        "person-autism": "no",
        "circumstances-detained_mental_health_act_within_5_years": "no",
        "circumstances-detained_criminal_justice_within_5_years": "no",
        "circumstances-family_requested_focused_review": "no",
        "circumstances-concerns_about_care": "no",
        "circumstances-likely_learning": "no",
        "person-opted_out_of_secondary_use": "no",
        "organisations_involved": "Southmead Hospital\nBrunswick Care Ltd",
        "notifier-name": "Dr Chris Lee",
        "notifier-role": "gp",
        "notifier-email": "chris.lee@gp.example.nhs.uk",
    }


def fill(page: Page, values: dict[str, str]) -> None:
    for name, value in values.items():
        field = page.locator(f"[name='{name}']").first
        kind = field.evaluate("el => el.tagName.toLowerCase() + ':' + (el.type || '')")
        if kind == "input:radio":
            page.locator(f"input[name='{name}'][value='{value}']").check()
        elif kind.startswith("select"):
            field.select_option(value)
        else:
            field.fill(value)


def send(page: Page) -> None:
    page.get_by_role("button", name="Send notification").click()
    page.wait_for_load_state()


@pytest.fixture(scope="module")
def journey() -> dict[str, str]:
    """What the partner's notification opened, for the IG officer to follow."""
    return {}


@pytest.fixture
def case(web_stack: WebStack, journey: dict[str, str]) -> dict[str, str]:
    """The case the form opened (or, run alone, one opened through the API), once the audit log has it."""
    if not journey:
        body = notification(**{"person.nhs_number": nhs_number("401023213"), "person.family_name": "Alone"})
        opened = web_stack.call(
            "POST", "notification", "/notifications", "partner_system", sub="gp.lee", json=body
        )
        journey.update(case_id=opened["case_id"], reference=opened["reference"])
    eventually(
        lambda: (
            answer(
                web_stack, "/audit/cases", "audit", "ig_officer", "ig.jo", q=journey["reference"]
            ).is_success
        )
    )
    return journey


def test_partner_staff_notify_a_death_after_fixing_what_the_service_refused(
    web_stack: WebStack, page: Page, journey: dict[str, str]
) -> None:
    # Given partner staff on the notification form
    sign_in(page, web_stack.web, "gp.lee")
    expect(page.get_by_role("heading", level=1)).to_have_text("Notify a death")
    expect(page.locator("#notifier-organisation")).to_have_value("L81001")  # their organisation
    assert_accessible(page)
    shoot(page, SHOTS / "notify-empty.png")
    notification_id = page.locator("input[name=notification_id]").input_value()

    # When they send it with mistakes: no given name, no sex, a date of death that is not a real
    # date, an NHS number of the wrong length
    values = form_values("", "Okafor", "12345")
    del values["person-sex"]
    values |= {"death-date_of_death-day": "31", "death-date_of_death-month": "2"}
    fill(page, values)
    send(page)

    # Then the error summary lists each mistake, each field shows its own, and what they typed is kept
    summary = page.locator(".nhsuk-error-summary")
    expect(summary).to_be_visible()
    mistakes = {
        "person-nhs_number": "An NHS number is 10 digits",
        "person-given_name": "Enter the person's given name",
        "person-sex": "Select the person's sex",
        "death-date_of_death": "Date of death must be a real date",
    }
    for key, message in mistakes.items():
        expect(summary.locator(f"a[href='#{key}']")).to_have_text(message)
        expect(page.locator(f"#{key}-error")).to_contain_text(message)
        assert page.locator(f"#{key}").count() == 1
    assert summary.locator("li").count() == len(mistakes)
    expect(page.locator("#person-nhs_number")).to_have_value("12345")
    expect(page.locator("#person-family_name")).to_have_value("Okafor")
    expect(page.locator("#death-date_of_death-day")).to_have_value("31")
    expect(page.locator("input[name=person-learning_disability][value=yes]")).to_be_checked()
    expect(page.locator("#person-ethnicity")).to_have_value("A")
    expect(page).to_have_title(re.compile("^Error: "))
    assert page.locator("input[name=notification_id]").input_value() == notification_id
    assert_accessible(page)
    shoot(page, SHOTS / "notify-errors.png")
    # and the error summary's links take them to the field
    summary.locator("a[href='#person-given_name']").click()
    expect(page.locator("#person-given_name")).to_be_focused()

    # and the notification service holds nothing for that notification
    held = answer(web_stack, f"/notifications/{notification_id}", "notification", "lac", "lac.alex")
    assert held.status_code == 404, held.text

    # When they correct the mistakes and send it again
    number = nhs_number("943476591")
    fill(
        page,
        {
            "person-given_name": "Ada",
            "person-sex": "female",
            "person-nhs_number": number,
            "death-date_of_death-day": str(died().day),
            "death-date_of_death-month": str(died().month),
        },
    )
    send(page)

    # Then the outcome is in words, with the case's reference
    expect(page.get_by_role("heading", level=1)).to_have_text("Notification sent")
    assert page.url.endswith(f"/notify/{notification_id}")
    panel = page.locator(".nhsuk-panel")
    expect(panel).to_contain_text("Case opened")
    reference = REFERENCE.search(panel.inner_text())
    assert reference, panel.inner_text()
    assert_accessible(page)
    shoot(page, SHOTS / "notify-outcome.png")
    held = answer(web_stack, f"/notifications/{notification_id}", "notification", "lac", "lac.alex")
    assert held.status_code == 200 and held.json()["reference"] == reference.group(0)
    journey.update(case_id=held.json()["case_id"], reference=reference.group(0))


def test_partner_staff_notify_a_death_with_the_keyboard_alone(web_stack: WebStack, page: Page) -> None:
    sign_in(page, web_stack.web, "gp.lee")
    values = form_values("Bo", "Keyes", nhs_number("450557710"))

    def tab_to(selector: str) -> None:
        target = page.locator(selector).first
        for _ in range(200):
            if target.evaluate("el => el === document.activeElement"):
                return
            page.keyboard.press("Tab")
        raise AssertionError(f"Tab never reached {selector}")

    for name, value in values.items():
        first = page.locator(f"[name='{name}']").first
        kind = first.evaluate("el => el.tagName.toLowerCase() + ':' + (el.type || '')")
        if kind == "input:radio":
            # Tab enters the group on its first option; the arrow keys move to (and choose) the others
            options = page.locator(f"input[name='{name}']")
            index = [options.nth(i).get_attribute("value") for i in range(options.count())].index(value)
            tab_to(f"input[name='{name}']")
            page.keyboard.press("Space")
            for _ in range(index):
                page.keyboard.press("ArrowDown")
        elif kind.startswith("select"):
            tab_to(f"[name='{name}']")
            label = first.locator(f"option[value='{value}']").inner_text()
            page.keyboard.type(label[:12])
        else:
            tab_to(f"[name='{name}']")
            lines = value.split("\n")
            for i, line in enumerate(lines):
                page.keyboard.type(line)
                if i < len(lines) - 1:
                    page.keyboard.press("Enter")
    for name, value in values.items():
        if page.locator(f"[name='{name}']").first.get_attribute("type") == "radio":
            expect(page.locator(f"input[name='{name}'][value='{value}']")).to_be_checked()
        else:
            expect(page.locator(f"[name='{name}']")).to_have_value(value)
    tab_to("button:has-text('Send notification')")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.get_by_role("heading", level=1)).to_have_text("Notification sent")
    expect(page.locator(".nhsuk-panel")).to_contain_text("Case opened")
    expect(page.locator(".nhsuk-panel")).to_contain_text(REFERENCE)


def test_ig_officer_finds_the_case_by_reference_and_reads_its_timeline(
    web_stack: WebStack, page: Page, case: dict[str, str]
) -> None:
    sign_in(page, web_stack.web, "ig.jo")
    expect(page.get_by_role("heading", level=1)).to_have_text("Find a case")
    assert_accessible(page)

    page.get_by_role("button", name="Find case").click()
    expect(page.locator("#case-error")).to_contain_text("Enter a case reference or a case id")
    assert_accessible(page)
    page.get_by_label("Case reference or case id").fill("LDR-2099-99999")
    page.get_by_role("button", name="Find case").click()
    expect(page.locator(".nhsuk-error-summary a[href='#case']")).to_have_text(
        "No case with reference LDR-2099-99999"
    )
    expect(page.get_by_label("Case reference or case id")).to_have_value("LDR-2099-99999")
    assert_accessible(page)
    shoot(page, SHOTS / "find-not-found.png")

    page.get_by_label("Case reference or case id").fill(case["reference"])
    page.get_by_role("button", name="Find case").click()
    assert page.url.endswith(f"/ig/cases/{case['case_id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Timeline")
    expect(page.locator(".nhsuk-caption-l")).to_contain_text(case["reference"])
    opened = page.locator("tbody tr", has_text="Case opened").first
    expect(opened).to_contain_text("Notification")
    expect(opened).to_contain_text("Partner staff")
    expect(opened.locator("td").nth(4)).to_have_text(re.compile(r"^\d+$"))
    assert_accessible(page)
    shoot(page, SHOTS / "timeline.png")

    # The timeline filters by service and turns round, with plain GET forms
    page.get_by_label("Service").select_option("notification")
    page.get_by_label("Order").select_option("newest")
    page.get_by_role("button", name="Show entries").click()
    # The new page first (its caption waits for it): rows read while it loads are none (seen in CI).
    expect(page.locator("caption")).to_contain_text("newest first")
    services = page.locator("tbody tr td:nth-child(4)").all_inner_texts()
    assert services and set(services) == {"Notification"}, services
    assert_accessible(page)


def test_ig_officer_sees_the_case_before_and_after_it_was_notified(
    web_stack: WebStack, page: Page, case: dict[str, str]
) -> None:
    sign_in(page, web_stack.web, "ig.jo")
    page.goto(f"{web_stack.web}/ig/cases/{case['case_id']}")
    page.get_by_role("link", name="See the case as it stood at a date and time").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("The case as it stood at a date and time")
    assert_accessible(page)

    def at(moment: datetime) -> None:
        for part, value in (("day", moment.day), ("month", moment.month), ("year", moment.year)):
            page.locator(f"#as_of-{part}").fill(str(value))
        page.locator("#as_of_time-hour").fill(f"{moment.hour:02}")
        page.locator("#as_of_time-minute").fill(f"{moment.minute:02}")
        page.get_by_role("button", name="Show the case at this time").click()

    at(datetime.now(LONDON) - timedelta(days=1))
    expect(page.locator(".nhsuk-inset-text")).to_contain_text("Nothing was known about this case")
    assert_accessible(page)
    shoot(page, SHOTS / "as-of-before.png")

    at(datetime.now(LONDON) + timedelta(minutes=2))
    facts = page.locator(".nhsuk-summary-list")
    expect(facts.locator(".nhsuk-tag").first).to_have_text(re.compile("^(Open|Waiting for allocation)$"))
    expect(facts).to_contain_text("Initial review")
    assert_accessible(page)
    shoot(page, SHOTS / "as-of-after.png")

    page.locator("#as_of_time-hour").fill("25")
    page.get_by_role("button", name="Show the case at this time").click()
    expect(page.locator(".nhsuk-error-summary a[href='#as_of_time']")).to_be_visible()
    assert_accessible(page)


def test_ig_officer_sees_who_viewed_personal_details_and_why(
    web_stack: WebStack, page: Page, case: dict[str, str]
) -> None:
    reason = "Checking the GP practice before allocation"
    web_stack.call(
        "GET",
        "notification",
        f"/cases/{case['case_id']}/person",
        "lac",
        sub="lac.alex",
        params={"reason": reason},
    )
    eventually(
        lambda: any(
            a["read"] == "personal_details"
            for a in answer(
                web_stack, "/audit/access", "audit", "ig_officer", "ig.jo", case_id=case["case_id"]
            ).json()["access"]
        )
    )
    sign_in(page, web_stack.web, "ig.jo")
    page.get_by_role("link", name="Access log", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Access log")
    assert_accessible(page)
    page.get_by_label("Case reference or case id").fill(case["reference"])
    page.get_by_role("button", name="Show entries").click()
    viewed = page.locator("tbody tr", has_text="Viewed personal details")
    expect(viewed).to_have_count(1)
    expect(viewed).to_contain_text("lac.alex")
    expect(viewed).to_contain_text("Local Area Contact")
    expect(viewed).to_contain_text(reason)
    expect(viewed).to_contain_text(case["reference"])
    assert_accessible(page)
    shoot(page, SHOTS / "access-by-case.png")

    page.get_by_label("Case reference or case id").fill("")
    page.get_by_label("Person's user id").fill("lac.alex")
    today = datetime.now(LONDON).date()
    for key in ("from", "to"):
        for part, value in (("day", today.day), ("month", today.month), ("year", today.year)):
            page.locator(f"#{key}-{part}").fill(str(value))
    page.get_by_role("button", name="Show entries").click()
    expect(page.locator("tbody tr", has_text=reason)).to_have_count(1)
    expect(page.locator("tbody tr", has_text="ig.jo")).to_have_count(0)
    assert_accessible(page)

    page.locator("#to-day").fill("32")
    page.get_by_role("button", name="Show entries").click()
    expect(page.locator(".nhsuk-error-summary a[href='#to']")).to_have_text(
        "The last date must be a real date"
    )
    assert_accessible(page)
    shoot(page, SHOTS / "access-error.png")


def test_ig_officer_sees_the_log_verified_and_its_latest_checkpoint(web_stack: WebStack, page: Page) -> None:
    sign_in(page, web_stack.web, "ig.jo")
    page.get_by_role("link", name="Log verification", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Log verification")
    assert_accessible(page)
    page.get_by_role("button", name="Sign a checkpoint now").click()
    expect(page.locator(".nhsuk-notification-banner")).to_contain_text("Checkpoint signed over")
    results = page.locator(".nhsuk-summary-list")
    expect(results.first).to_contain_text("Verified")
    expect(results.nth(1)).to_contain_text("Valid")
    expect(results.nth(1)).to_contain_text("Key fingerprint")
    expect(results.nth(1).locator("code").first).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    assert_accessible(page)
    shoot(page, SHOTS / "verification.png")


def test_ig_officer_downloads_the_cases_export_with_proofs(
    web_stack: WebStack, page: Page, case: dict[str, str]
) -> None:
    sign_in(page, web_stack.web, "ig.jo")
    page.goto(f"{web_stack.web}/ig/cases/{case['case_id']}")
    with page.expect_download() as downloading:
        page.get_by_role("link", name=re.compile("Download the case's export with proofs")).click()
    download = downloading.value
    assert download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes())) as exported:
        names = exported.namelist()
        lines = next(n for n in names if n.endswith(".jsonl"))
        events = [json.loads(line) for line in exported.read(lines).decode().splitlines() if line.strip()]
    assert any("notification.CaseOpened" in json.dumps(e) for e in events), names
    assert all(case["case_id"] in json.dumps(e) for e in events)


def test_partner_staff_cannot_open_the_ig_pages(web_stack: WebStack, page: Page) -> None:
    sign_in(page, web_stack.web, "gp.lee")
    for path in ("/ig", "/ig/access", "/ig/verification"):
        response = page.goto(f"{web_stack.web}{path}")
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("You cannot see this page")
    assert_accessible(page)
    shoot(page, SHOTS / "partner-forbidden.png")


def test_the_contracts_refusals_land_on_fields_the_form_has() -> None:
    """No browser: the form's body goes through the contract's own parser, and each refusal it makes
    lands on a field whose id the form's template writes."""
    template = (Path(partner.__file__).parents[1] / "templates/partner/notify.html").read_text()
    for f in partner.FIELDS:
        assert f'"{f.key}"' in template, f.key

    def refusals(changes: dict[str, str]) -> dict[str, str]:
        values = form_values("Ada", "Okafor", "943 476 5919") | {"notifier-organisation": "L81001"} | changes
        form = Form(values=values)
        with pytest.raises(InvalidNotification) as refused:
            parse_notification(partner._body(form, "5f1e0e9e-8a55-4b8e-9d38-0a4f7f8c1d11"))
        partner._absorb(form, ApiError("n", 422, {"errors": [e.as_dict() for e in refused.value.errors]}))
        return form.errors

    assert refusals(
        {
            "notifier-email": "",  # no way to reach the notifier
            "next_of_kin-relationship": "sister",  # next of kin without a name
            "person-postcode": "NOT A CODE",
            "person-sex": "",
        }
    ) == {
        "notifier-email": "Give an email or a phone number (or both)",
        "next_of_kin-name": "Enter the next of kin's name",
        "next_of_kin-involve_family": "Select if the family can be involved in the review",
        "person-postcode": "Not a UK postcode",
        "person-sex": "Select the person's sex",
    }
    assert refusals({"death-date_of_death-year": str(date.today().year + 1)}) == {
        "death-date_of_death": "The date of death is in the future"
    }
