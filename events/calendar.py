"""Calendar rules every service must count the same way."""

import calendar
from datetime import date

REVIEW_DEADLINE_MONTHS = 6


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or the month's last day where it has no such day
    (31 August + 6 months = 28 or 29 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def review_deadline(notified_on: date) -> date:
    """Reviews should be completed within six months of notification."""
    return add_months(notified_on, REVIEW_DEADLINE_MONTHS)
