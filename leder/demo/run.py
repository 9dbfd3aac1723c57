"""`leder demo`: find the running system (or start it), refuse if it already holds cases, carry a
seeded caseload through simulated months ending yesterday, then hand the clock back to real time and
say what was made and where to look."""

import argparse
import asyncio
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from events.calendar import add_months
from events.topics import SERVICES
from infra.local import home, local_env
from infra.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, TokenIssuer
from leder.demo.calendar import Calendar
from leder.demo.caseload import generate
from leder.demo.people import LAC, Demo
from leder.demo.world import DemoError, World
from leder.stack import Stack


@dataclass
class Target:
    urls: dict[str, str]
    issuer: TokenIssuer
    bootstrap: str
    prefix: str
    clock_file: Path
    started: Stack | None = None


def running_system() -> Target | None:
    """The system `leder up` wrote down, if all of it answers."""
    env = local_env()
    urls = {s: env.get(f"LEDER_{s.upper()}_URL", "") for s in SERVICES}
    if not all(urls.values()) or "LEDER_CLOCK_FILE" not in env:
        return None
    for url in urls.values():
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code != 200:
                return None
        except httpx.HTTPError:
            return None
    issuer = TokenIssuer.from_file(
        env["LEDER_TOKEN_SIGNING_KEY_FILE"],
        issuer=env.get("LEDER_TOKEN_ISSUER") or DEFAULT_ISSUER,
        audience=env.get("LEDER_TOKEN_AUDIENCE") or DEFAULT_AUDIENCE,
    )
    return Target(
        urls,
        issuer,
        env["LEDER_KAFKA_BOOTSTRAP"],
        env.get("LEDER_TOPIC_PREFIX", ""),
        Path(env["LEDER_CLOCK_FILE"]),
    )


def start_system() -> Target:
    stack = Stack(home(), web=True)
    stack.start()
    target = running_system()
    if target is None:
        stack.stop()
        raise DemoError("the system started but does not answer")
    target.started = stack
    return target


async def simulate(
    target: Target, notifications: int, months: int, seed: int
) -> tuple[Demo, dict[str, Path]]:
    end = datetime.now(UTC).date()  # exclusive: the simulated days all lie before today
    start = add_months(end, -months)
    caseload = generate(seed, notifications, start, end)
    world = World(target.urls, target.issuer, target.bootstrap, target.prefix)
    calendar = Calendar(target.clock_file, start)
    demo = Demo(world, calendar, caseload, seed)
    try:
        await world.start()
        await _refuse_if_not_empty(world)
        _say(
            f"Simulating {months} months ({start} to {end - timedelta(days=1)}), {notifications}"
            f" notifications, seed {seed}: every step through the services' APIs and the partner topic."
        )
        try:
            await _run_days(demo, start, end)
        finally:
            target.clock_file.unlink(missing_ok=True)  # back to real time, whatever happened
            calendar.cancel()
        return demo, await fetch_reports(world, start, end, home() / "demo")
    finally:
        await world.close()


async def _run_days(demo: Demo, start: date, end: date) -> None:
    calendar = demo.calendar
    await calendar.advance_to(start)
    await demo.register_reviewers()
    for notice in demo.caseload.notices:
        calendar.spawn(demo.notify(notice))
    calendar.spawn(demo.allocation_rounds())
    calendar.spawn(demo.qa_panels())
    calendar.spawn(demo.governance_group())
    began, day = time.monotonic(), start
    while day < end:
        day += timedelta(days=1)
        if day < end:
            await calendar.advance_to(day)
        if day.day == 1 or day == end:
            _progress(demo, day, time.monotonic() - began)
    await calendar.settled()
    await asyncio.sleep(2)  # the schedulers' last look at the simulated days


async def _refuse_if_not_empty(world: World) -> None:
    cases = (
        await world.call("GET", "notification", "/cases", role=LAC[0], sub=LAC[1], params={"limit": 1})
    ).json()
    if cases["cases"]:
        raise DemoError(
            "the system already holds cases; the demo needs an empty one so its simulated months come"
            " first. Stop `leder up`, remove .leder (or set LEDER_HOME elsewhere) and run `leder demo` again."
        )


def _progress(demo: Demo, day: date, seconds: float) -> None:
    t = demo.tally
    month = (day - timedelta(days=1)).strftime("%Y-%m")
    _say(
        f"  {month}  notified {t['notified by kafka'] + t['notified by http']:>4}"
        f"  opened {t['case_opened']:>4}"
        f"  allocated {t['allocated']:>4}  submitted {t['submitted']:>4}  approved {t['approved by QA']:>4}"
        f"  actions {t['actions agreed']:>3}   ({demo.world.calls} API calls, {seconds:.0f} s)"
    )


async def fetch_reports(world: World, start: date, end: date, folder: Path) -> dict[str, Path]:
    """The KPI report of the last whole month, the governance report of the last whole quarter and
    the activity of the whole period, as the self-contained HTML pages the governance service makes."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    last_month = end.replace(day=1) - timedelta(days=1)
    quarter_end = date(end.year, 3 * ((end.month - 1) // 3) + 1, 1) - timedelta(days=1)
    wanted = {
        "kpis": ("/reports/kpis", {"month": last_month.strftime("%Y-%m")}),
        "governance": (
            "/reports/governance",
            {"quarter": f"{quarter_end.year}-Q{(quarter_end.month - 1) // 3 + 1}"},
        ),
        "activity": (
            "/reports/activity",
            {"from": start.isoformat(), "to": (end - timedelta(days=1)).isoformat()},
        ),
    }
    paths = {}
    for name, (path, params) in wanted.items():
        page = await world.call(
            "GET", "governance", path, role=LAC[0], sub=LAC[1], params={**params, "format": "html"}
        )
        paths[name] = folder / f"{name}-{'-'.join(str(v) for v in params.values())}.html"
        await asyncio.to_thread(paths[name].write_text, page.text)
    return paths


def _summary(demo: Demo, target: Target, reports: dict[str, Path], seconds: float) -> None:
    t = demo.tally
    some_case = next((c for c in demo.cases.values() if c.returned), next(iter(demo.cases.values()), None))
    _say(
        f"\nDone in {seconds:.0f} s: {demo.world.published} notifications on the partner topic and"
        f" {demo.world.calls} API calls."
    )
    rows = [
        ("notifications", t["notified by kafka"] + t["notified by http"]),
        (
            "  cases opened (diagnoses the LAC confirmed included)",
            t["case_opened"] + t["eligibility confirmed"],
        ),
        ("  same person notified again", t["duplicate_linked"]),
        ("  children, referred to the CDOP", t["referred_to_cdop"]),
        ("  neither diagnosis: not eligible", t["not_eligible"]),
        (
            "  diagnosis not known: confirmed / rejected",
            f"{t['eligibility confirmed']} / {t['eligibility rejected']}",
        ),
        (
            "allocated (deferred a day for want of a free reviewer)",
            f"{t['allocated']} ({t['allocation deferred a day']})",
        ),
        ("conflicts of interest declared", t["conflicts declared"]),
        ("reviews paused / lapses in care", f"{t['paused']} / {t['lapses in care']}"),
        (
            "submitted / returned by QA / approved",
            f"{t['submitted']} / {t['returned by QA']} / {t['approved by QA']}",
        ),
        ("QA panels held", t["QA panels held"]),
        ("actions agreed / completed", f"{t['actions agreed']} / {t['actions completed']}"),
    ]
    for label, value in rows:
        _say(f"  {label:<58} {value}")
    if demo.mismatches:
        _say(f"\n{len(demo.mismatches)} notification(s) decided otherwise than the caseload expected:")
        for line in demo.mismatches[:10]:
            _say(f"  {line}")
    n, a, r, g = (target.urls[s] for s in ("notification", "allocation", "review", "governance"))
    leder = leder_command()
    token = f"Authorization: Bearer $({leder} token --role {LAC[0]} --sub {LAC[1]})"
    if web := local_env().get("LEDER_WEB_URL"):
        _say(f"\nOpen {web} and sign in as the LAC (Alex Morgan), a reviewer, the QA panel, ...")
    _say("\nWhere to look (each API's own docs are at its /docs):")
    _say(f'  the allocation queue   curl -H "{token}" {shlex.quote(f"{a}/allocation-queue")}')
    _say(f'  overdue reviews        curl -H "{token}" {shlex.quote(f"{r}/reviews/overdue")}')
    _say(f'  open cases             curl -H "{token}" {shlex.quote(f"{n}/cases?status=open")}')
    _say(f'  overdue actions        curl -H "{token}" {shlex.quote(f"{g}/actions?status=overdue")}')
    for name, path in reports.items():
        _say(f"  {name + ' report':<22} {path.as_uri()}")
    if some_case is not None:
        # As the demo's information governance officer (Jo Williams on the sign-in page): every read
        # of the log names its reader.
        _say(f"  a case to replay       {leder} audit replay {some_case.case_id} --reader ig.jo")


def leder_command() -> str:
    """`leder` as a shell here runs it: the name if PATH finds this one, else the path of the script
    beside this interpreter (.venv/bin/leder), relative to here when it lies below, quoted as need be."""
    script = Path(sys.executable).parent / "leder"
    if not script.exists():  # not installed as a script: the module, with this interpreter
        return f"{shlex.quote(sys.executable)} -m leder.cli"
    found = shutil.which("leder")
    if found and Path(found).resolve() == script.resolve():
        return "leder"
    try:
        relative = script.absolute().relative_to(Path.cwd())
        return shlex.quote(str(relative) if relative.parent != Path(".") else f"./{relative}")
    except ValueError:
        return shlex.quote(str(script.absolute()))


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop what the demo started, as Ctrl-C does
    try:
        target = running_system()
        if target is None:
            _say("The system is not running: starting it (as `leder up` does).")
            target = start_system()
    except (DemoError, TimeoutError, OSError) as failed:
        _say(f"leder demo: {failed}")
        return 1
    began = time.monotonic()
    try:
        demo, reports = asyncio.run(simulate(target, args.notifications, args.months, args.seed))
        _summary(demo, target, reports, time.monotonic() - began)
        if demo.mismatches:
            return 1
        if target.started is not None and not args.stop:
            _say("\nThe system keeps running so you can look. Ctrl-C stops it.")
            target.started.watch()
        return 0
    except DemoError as failed:
        _say(f"leder demo: {failed}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if target.started is not None:
            target.started.stop()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _say(message: str) -> None:
    print(message, file=sys.stdout, flush=True)
