"""CSV cells a spreadsheet cannot run: every CSV the system writes goes through here."""

import csv
import io
from collections.abc import Iterable

# A spreadsheet takes a cell that starts with one of these for a formula (CSV injection): OWASP's
# advice is to prefix it with a single quote, which the spreadsheet shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(cell: object) -> str:
    """The cell as text; text a spreadsheet would run gets a leading quote. Numbers and other values
    the system itself renders (a count, a negative difference) stay as they are: only text people
    wrote can carry a formula, and a quoted -3 would no longer be a number."""
    if cell is None:
        return ""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return str(cell)


def csv_text(rows: Iterable[Iterable[object]]) -> str:
    """The rows as CSV, each cell neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([neutralised(cell) for cell in row])
    return out.getvalue()
