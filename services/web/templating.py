"""Jinja with the NHS.UK frontend macros, and the filters that make data read as people write it."""

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.templating import Jinja2Templates
from jinja2 import ChainableUndefined, ChoiceLoader, Environment, FileSystemLoader, PackageLoader

from services.web.roles import ROLE_NAMES

TEMPLATES = Path(__file__).parent / "templates"
# People in England read times in their own clock, summer time included.
LONDON = ZoneInfo("Europe/London")

# Status codes the services use, in the words and tag colours people see.
STATUS_TAGS: dict[str, tuple[str, str]] = {
    "open": ("Open", "blue"),
    "case_opened": ("Open", "blue"),
    "awaiting_allocation": ("Waiting for allocation", "yellow"),
    "allocated": ("Allocated", "blue"),
    "in_progress": ("In progress", "blue"),
    "not_started": ("Not started", "grey"),
    "done": ("Completed", "green"),
    "paused": ("Paused", "orange"),
    "submitted": ("Awaiting QA", "purple"),
    "awaiting_qa": ("Awaiting QA", "purple"),
    "returned": ("Returned by QA", "red"),
    "returned_for_rework": ("Returned by QA", "red"),
    "completed": ("Completed", "green"),
    "closed": ("Closed", "green"),
    "reopened": ("Reopened", "orange"),
    "eligibility_to_confirm": ("Eligibility to confirm", "yellow"),
    "not_eligible": ("Not eligible", "grey"),
    "referred_to_cdop": ("Referred to CDOP", "grey"),
    "duplicate_linked": ("Duplicate", "grey"),
    "overdue": ("Overdue", "red"),
    "due_soon": ("Due soon", "orange"),
    "initial": ("Initial review", "white"),
    "focused": ("Focused review", "aqua-green"),
    "approved": ("Approved", "green"),
}


def words(value: Any) -> str:
    """A code as words: `concerns_about_care` -> `Concerns about care`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    text = str(value).replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def nhs_date(value: Any) -> str:
    """`3 March 2026`, as the NHS style guide writes dates."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value[:10])
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        value = value.astimezone(LONDON).date() if value.tzinfo else value.date()
    return f"{value.day} {value:%B %Y}"


def nhs_datetime(value: Any) -> str:
    """`3 March 2026 at 2:05pm`, London time."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if not isinstance(value, datetime):
        return nhs_date(value)
    if value.tzinfo:
        value = value.astimezone(LONDON)
    hour = value.hour % 12 or 12
    return f"{value.day} {value:%B %Y} at {hour}:{value:%M}{'am' if value.hour < 12 else 'pm'}"


ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def dates_in_words(text: Any) -> str:
    """A service's sentence with its ISO dates as people write them ("deadline 1 September 2026");
    case references (LDR-2026-00042) are left alone."""

    def spoken(match: re.Match[str]) -> str:
        try:
            return nhs_date(date(int(match[1]), int(match[2]), int(match[3])))
        except ValueError:
            return match[0]

    return ISO_DATE.sub(spoken, str(text or ""))


def days(value: Any) -> str:
    if value is None:
        return ""
    n = int(value)
    return f"{n} day" if abs(n) == 1 else f"{n} days"


def status_tag(value: Any) -> tuple[str, str]:
    return STATUS_TAGS.get(str(value), (words(value), "grey"))


def environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), PackageLoader("nhsuk_frontend_jinja")]),
        undefined=ChainableUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        words=words,
        nhs_date=nhs_date,
        nhs_datetime=nhs_datetime,
        days=days,
        status_tag=status_tag,
        dates_in_words=dates_in_words,
    )
    env.globals["role_names"] = ROLE_NAMES
    return env


templates = Jinja2Templates(env=environment())
