"""Bounded parameter types every service's API shares.

Each bound is one the database or the calendar arithmetic behind a route can take: an integer a
PostgreSQL `integer` holds, a date between FIRST_DAY and LAST_DAY (a deadline six months on, or a
month before, is still a date Python and PostgreSQL both have), a moment whose UTC instant is such a
day. A value out of bounds is a 422 naming the field, never an overflow deep in a query (a 500)."""

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

MAX_INT = 2**31 - 1  # the largest PostgreSQL `integer`; offsets and sequence numbers stay under it
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2100, 12, 31)
FIRST_YEAR, LAST_YEAR = FIRST_DAY.year, LAST_DAY.year
# The longest period a report covers: longer ones are refused (422 `period_too_long`), so that no
# request can make a report compute for centuries of months.
MAX_REPORT_YEARS = 10


def _day(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"a date from {FIRST_DAY} to {LAST_DAY}")
    return value


def _moment(value: datetime) -> datetime:
    """In range as given and as its UTC instant (0001-01-01T00:00+14:00 is in year 0 in UTC)."""
    try:
        instant = value.astimezone(UTC) if value.tzinfo else value
    except OverflowError:
        instant = None
    if (
        instant is None
        or not FIRST_YEAR <= value.year <= LAST_YEAR
        or not FIRST_YEAR <= instant.year <= LAST_YEAR
    ):
        raise ValueError(f"a moment from {FIRST_DAY} to {LAST_DAY}")
    return value


def _year(value: int) -> int:
    if not FIRST_YEAR <= value <= LAST_YEAR:
        raise ValueError(f"a year from {FIRST_YEAR} to {LAST_YEAR}")
    return value


def _month(value: str) -> str:
    _year(int(value[:4]))
    return value


Day = Annotated[date, AfterValidator(_day)]
Moment = Annotated[datetime, AfterValidator(_moment)]
# YYYY-MM and YYYY-Qn with the year in range: `month=0000-01` is a 422, not a date(0, 1, 1) crash.
Month = Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$"), AfterValidator(_month)]
Quarter = Annotated[str, StringConstraints(pattern=r"^\d{4}-Q[1-4]$"), AfterValidator(_month)]
Year = Annotated[int, AfterValidator(_year)]
