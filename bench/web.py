"""The web application's pages with the demo caseload loaded: each page's p50/p95 time to the last
byte, as a signed-in person's browser asks for it, and how many API calls the page made.

Starts the whole system on the embedded stack (as `leder up`), loads the seeded demo caseload
(`leder demo`), signs each person in through the development sign-in, then asks for each page in turn.
Target: p95 < 300 ms on this machine. `--quick` (what CI runs) loads a small caseload, asks each page a
few times and writes nothing; the full run writes its section of bench/results.md."""

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import machine, write_section
from events.topics import SERVICES
from infra.embedded import free_port
from infra.logging import configure_logging
from infra.tokens import TokenIssuer
from leder.stack import Stack
from tests.e2e.test_leder_up import free_ports

TITLE = "Web pages with the demo caseload (bench/web.py)"
TARGET_P95_MS = 300.0


@dataclass
class Figures:
    role: str
    page: str
    times_ms: list[float]
    api_calls: int
    status: int

    @property
    def p50(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


class Person:
    """A browser's session: signed in through the development sign-in page, as a person does."""

    def __init__(self, web: str, sub: str) -> None:
        self.client = httpx.Client(base_url=web, timeout=60, follow_redirects=False)
        page = self.client.get("/sign-in")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, "no form token on the sign-in page"
        answer = self.client.post("/sign-in/dev", data={"csrf_token": csrf.group(1), "person": sub})
        assert answer.status_code == 303, f"{sub} could not sign in: {answer.status_code}"

    def time(self, path: str, repeat: int) -> tuple[list[float], int, int]:
        times, calls, status = [], 0, 0
        for _ in range(repeat):
            started = time.perf_counter()
            response = self.client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            status = response.status_code
            calls = int(response.headers.get("x-leder-api-calls", "0"))
        return times, calls, status


def api(stack: Stack, issuer: TokenIssuer) -> Callable[..., Any]:
    def get(service: str, path: str, role: str, sub: str = "bench") -> Any:
        token = issuer.mint(sub, role)
        response = httpx.get(
            stack.url(service) + path, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        response.raise_for_status()
        return response.json()

    return get


def pages(get: Callable[..., Any]) -> list[tuple[str, str, list[str]]]:
    """(person, role words, paths): each role's main pages, on cases the demo made."""
    cases = get("notification", "/cases", "lac")["cases"]
    open_case = next((c for c in cases if c.get("status") == "open"), cases[0])
    closed = next((c for c in cases if c.get("status") == "closed"), cases[0])
    queue = get("allocation", "/allocation-queue", "lac")["cases"]
    waiting = queue[0]["case_id"] if queue else open_case["case_id"]
    reviewers = get("allocation", "/reviewers", "lac")["reviewers"]
    busy = max(reviewers, key=lambda r: r.get("active_caseload", 0))
    role = "senior_reviewer" if busy.get("senior") else "reviewer"
    # A completed review whose allocation has ended is listed without a way in (can_open false).
    mine = [r for r in get("review", "/reviews/mine", role, busy["user_id"])["reviews"] if r["can_open"]]
    panels = get("governance", "/qa-panels", "lac")["panels"]
    actions = get("governance", "/actions", "governance")["actions"]
    return [
        (
            "lac.alex",
            "LAC",
            [
                "/lac",
                "/lac/cases",
                "/lac/queue",
                f"/lac/cases/{open_case['case_id']}",
                f"/lac/cases/{waiting}/allocation",
                "/lac/reviewers",
                "/lac/panels",
            ],
        ),
        (busy["user_id"], "reviewer", ["/reviews", *[f"/reviews/{r['case_id']}" for r in mine[:1]]]),
        ("qa.priya", "QA panel", ["/qa", *([f"/qa/panels/{panels[0]['panel_id']}"] if panels else [])]),
        (
            "gov.sam",
            "Governance Group",
            ["/governance", *([f"/governance/actions/{actions[0]['action_id']}"] if actions else [])],
        ),
        ("ig.jo", "IG officer", ["/ig", f"/ig/cases/{closed['case_id']}", "/ig/access", "/ig/verification"]),
        ("gp.lee", "partner staff", ["/notify"]),
    ]


def screenshots(web: str, folder: Path, get: Callable[..., Any]) -> None:
    """Each role's main page on the demo caseload, as the README shows them."""
    from tests.support.web import chromium, shoot, sign_in

    cases = get("notification", "/cases", "lac")["cases"]
    closed = next((c for c in cases if c.get("status") == "closed"), cases[0])
    reviewers = get("allocation", "/reviewers", "lac")["reviewers"]
    busy = max(reviewers, key=lambda r: r.get("active_caseload", 0))
    role = "senior_reviewer" if busy.get("senior") else "reviewer"
    mine = [
        r
        for r in get("review", "/reviews/mine", role, busy["user_id"])["reviews"]
        if r["role_in_case"] == "reviewer" and r["can_open"]
    ]
    panels = get("governance", "/qa-panels", "lac")["panels"]
    held = next((p for p in panels if p["agenda_size"]), None)
    agenda = get("governance", f"/qa-panels/{held['panel_id']}", "lac")["agenda"] if held else []
    shots = [
        ("lac.alex", "/lac", "lac-home"),
        (busy["user_id"], f"/reviews/{mine[0]['case_id']}" if mine else "/reviews", "reviewer-task-list"),
        (
            "qa.priya",
            f"/qa/reviews/{agenda[0]['case_id']}?panel={held['panel_id']}" if held and agenda else "/qa",
            "qa-review",
        ),
        ("gov.sam", "/governance/reports?report=annual", "governance-report"),
        ("ig.jo", f"/ig/cases/{closed['case_id']}", "ig-timeline"),
        ("gp.lee", "/notify", "partner-notify"),
    ]
    with chromium() as browser:
        for sub, path, name in shots:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            sign_in(page, web, sub)
            page.goto(web + path)
            shoot(page, folder / f"{name}.png")
            context.close()
            print(f"wrote {folder / name}.png", flush=True)


def main(quick: bool, shots: Path | None = None) -> int:
    notifications, months, repeat = (40, 3, 5) if quick else (300, 18, 30)
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LEDER_DATABASE_URL", "LEDER_KAFKA_BOOTSTRAP", "LEDER_TOPIC_PREFIX")
    }
    with tempfile.TemporaryDirectory(prefix="leder-bench-web-") as folder:
        home = Path(folder) / ".leder"
        environ |= {
            "LEDER_HOME": str(home),
            "LEDER_BASE_PORT": str(free_ports(len(SERVICES) + 1)),
            "LEDER_EMBEDDED_PG_PORT": str(free_port()),
            "LEDER_EMBEDDED_KAFKA_PORT": str(free_port()),
        }
        os.environ["LEDER_HOME"] = str(home)  # where the demo finds the system
        stack = Stack(home, environ=environ, web=True)
        try:
            stack.start()
            from leder.demo.run import running_system, simulate

            target = running_system()
            assert target is not None, "the system does not answer"
            began = time.monotonic()
            asyncio.run(simulate(target, notifications, months, 2026))
            loaded = time.monotonic() - began
            get = api(stack, target.issuer)
            figures: list[Figures] = []
            for sub, role, paths in pages(get):
                person = Person(stack.url("web"), sub)
                for path in paths:
                    person.time(path, 2)  # warm: the first call of a path pays for imports and plans
                    times, calls, status = person.time(path, repeat)
                    figures.append(Figures(role, path, times, calls, status))
            if shots is not None:
                screenshots(stack.url("web"), shots, get)
        finally:
            stack.stop()
    lines = [
        "| role | page | p50 ms | p95 ms | API calls | status |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {f.role} | `{_shape(f.page)}` | {f.p50:.0f} | {f.p95:.0f} | {f.api_calls} | {f.status} |"
            for f in figures
        ),
    ]
    slow = [f for f in figures if f.p95 >= TARGET_P95_MS]
    broken = [f for f in figures if f.status != 200]
    verdict = f"Target p95 < {TARGET_P95_MS:.0f} ms: " + (
        "met by every page." if not slow else f"missed by {', '.join(_shape(f.page) for f in slow)}."
    )
    notes = (
        f"Machine: {machine()}. Caseload: `leder demo --notifications {notifications} --months {months}`"
        f" ({loaded:.0f} s to load); each page asked {repeat} times after 2 warm-up asks, one at a time,"
        " by one signed-in person over HTTP (time to the last byte; no browser rendering). API calls: the"
        " calls the page made to the five services (the X-Leder-API-Calls header)."
    )
    print("\n".join([*lines, "", verdict, "", notes]))
    if broken:
        print("FAILED: " + ", ".join(f"{f.page} answered {f.status}" for f in broken), file=sys.stderr)
        return 1
    if not quick:
        write_section(TITLE, "\n".join([*lines, "", verdict, "", notes]))
    return 0


def _shape(path: str) -> str:
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "{id}", path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small caseload, a few asks (what CI runs)")
    parser.add_argument(
        "--screenshots",
        type=Path,
        help="also write each role's main page here (docs/screenshots for the README)",
    )
    configure_logging("bench", "WARNING")
    arguments = parser.parse_args()
    sys.exit(main(arguments.quick, arguments.screenshots))
