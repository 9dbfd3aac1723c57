"""Pages in a real browser: Debian's Chromium driven by Playwright (no browser download), every page
checked with axe-core for WCAG 2.2 AA."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own probe starts it: no sandbox as root, and nothing that reaches the internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
_axe = Axe()


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def assert_accessible(page: Page) -> None:
    """axe-core finds no WCAG 2.2 AA violation on the page as it stands (errors shown included)."""
    results = _axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG_22_AA}})
    violations = results.response.get("violations", [])
    assert not violations, f"{page.url}: {len(violations)} axe violation(s)\n" + "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}; "
        + "; ".join(str(n.get("target")) for n in v.get("nodes", [])[:5])
        for v in violations
    )


def sign_in(page: Page, base_url: str, person: str) -> None:
    """The development sign-in, as a person does it: pick yourself, press Sign in."""
    page.goto(f"{base_url}/sign-in")
    page.locator(f"input[name=person][value='{person}']").check()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()


def shoot(page: Page, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
