"""Signing in and out, roles and switching between them, and the session's protections, in Chromium."""

import httpx
from playwright.sync_api import Page, expect

from tests.support.web import assert_accessible, sign_in, sign_out
from tests.web.conftest import WebStack


def test_a_signed_out_visitor_is_sent_to_sign_in_and_back_to_where_they_were_going(
    web_stack: WebStack, page: Page
) -> None:
    page.goto(f"{web_stack.web}/lac/reviewers")
    assert page.url.startswith(f"{web_stack.web}/sign-in?next=")
    expect(page.get_by_text("Development sign-in: anyone can be anyone here")).to_be_visible()
    assert_accessible(page)
    page.locator("input[name=person][value='lac.alex']").check()
    page.get_by_role("button", name="Sign in").click()
    assert page.url == f"{web_stack.web}/lac/reviewers"


def test_sign_in_without_choosing_shows_the_error_on_the_field(web_stack: WebStack, page: Page) -> None:
    page.goto(f"{web_stack.web}/sign-in")
    page.get_by_role("button", name="Sign in").click()
    summary = page.locator(".nhsuk-error-summary")
    expect(summary).to_contain_text("Select who you are")
    expect(page.locator("#person-error")).to_contain_text("Select who you are")
    assert_accessible(page)


def test_the_header_names_the_person_and_role_and_a_lac_switches_to_the_qa_panel(
    web_stack: WebStack, page: Page
) -> None:
    sign_in(page, web_stack.web, "lac.alex")
    expect(page.locator(".nhsuk-header__account")).to_contain_text("Alex Morgan, Local Area Contact")
    page.goto(f"{web_stack.web}/qa")
    expect(page.get_by_role("heading", level=1)).to_have_text("You cannot see this page")
    page.get_by_role("button", name="Work as QA panel member to see it").click()
    assert page.url == f"{web_stack.web}/qa"
    expect(page.locator(".nhsuk-header__account")).to_contain_text("Alex Morgan, QA panel member")
    assert_accessible(page)


def test_a_partner_cannot_open_the_lac_pages(web_stack: WebStack, page: Page) -> None:
    sign_in(page, web_stack.web, "gp.lee")
    response = page.goto(f"{web_stack.web}/lac")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You cannot see this page")
    expect(page.get_by_role("button", name="Work as")).to_have_count(0)
    assert_accessible(page)


def test_signing_out_ends_the_session_and_a_posted_form_needs_its_token(
    web_stack: WebStack, page: Page
) -> None:
    sign_in(page, web_stack.web, "ig.jo")
    cookie = next(c for c in page.context.cookies() if c["name"] == "leder_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    # A form posted from elsewhere (no token of this session) changes nothing.
    forged = httpx.post(
        f"{web_stack.web}/account/role",
        data={"role": "ig_officer"},
        cookies={"leder_session": cookie["value"]},
    )
    assert forged.status_code == 400
    sign_out(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("You have signed out")
    # The old cookie no longer signs anyone in.
    again = httpx.get(f"{web_stack.web}/ig", cookies={"leder_session": cookie["value"]})
    assert again.status_code == 303 and again.headers["location"].startswith("/sign-in")


def test_pages_carry_the_security_headers(web_stack: WebStack) -> None:
    response = httpx.get(f"{web_stack.web}/sign-in")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    css = httpx.get(f"{web_stack.web}/static/nhsuk/nhsuk-frontend.min.css")
    assert css.status_code == 200 and "assets.nhs.uk" not in css.text
