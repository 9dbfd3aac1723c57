"""The whole system as `leder up` runs it (five services and the web application, each its own
process, on the embedded PostgreSQL and broker), once per test module, and a browser to use it."""

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from events.topics import SERVICES
from infra.embedded import free_port
from infra.tokens import TokenIssuer
from tests.e2e.test_leder_up import free_ports, read_until
from tests.support.notifications import NOTIFIER_ORGANISATION
from tests.support.tokens import issuer_of
from tests.support.web import chromium

ROOT = Path(__file__).parents[2]


@dataclass
class WebStack:
    home: Path
    web: str
    urls: dict[str, str]
    issuer: TokenIssuer  # the stack's people key, as `leder token` would sign

    def call(self, method: str, service: str, path: str, role: str, sub: str = "setup", **kwargs: Any) -> Any:
        """Set a scene through a service's API, as someone in `role` would (not through the pages)."""
        organisation = kwargs.pop("organisation", None)
        if organisation is None and role == "partner_system":
            # A partner notifies, and reads outcomes, in its own organisation's name only.
            notifier = (kwargs.get("json") or {}).get("notifier") or {}
            organisation = notifier.get("organisation") or NOTIFIER_ORGANISATION
        token = self.issuer.mint(sub, role, organisation)
        response = httpx.request(
            method,
            self.urls[service] + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    home = tmp_path_factory.mktemp("web") / ".leder"
    base = free_ports(len(SERVICES) + 1)
    env = {k: v for k, v in os.environ.items() if k not in ("LEDER_DATABASE_URL", "LEDER_KAFKA_BOOTSTRAP")}
    env |= {
        "LEDER_HOME": str(home),
        "LEDER_BASE_PORT": str(base),
        "LEDER_EMBEDDED_PG_PORT": str(free_port()),
        "LEDER_EMBEDDED_KAFKA_PORT": str(free_port()),
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "leder.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        read_until(up, "The LeDeR system is running", timeout=180)
        urls = {service: f"http://127.0.0.1:{base + i}" for i, service in enumerate(SERVICES)}
        yield WebStack(home, f"http://127.0.0.1:{base + len(SERVICES)}", urls, issuer_of(home))
    finally:
        # SIGTERM, not SIGINT: a background job (`make test &`, a CI runner) starts it with SIGINT ignored.
        up.terminate()
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) per test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(15_000)
    try:
        yield p
    finally:
        context.close()
