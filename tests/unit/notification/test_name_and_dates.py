"""The person index's name key (name_and_dates) takes a shorter way for an ASCII name: it must be
exactly what normalise_name gives, for every name, or a person notified again would not be matched."""

import pytest

from events.partner import normalise_name
from services.notification.projections import name_and_dates

NAMES = [
    "Smith",
    "  o'BRIEN  ",
    "Van  der\tBerg",
    "MacDonald-Jones\n",
    "a\x1fb",  # a separator str.split() splits on
    "",
    "Zoë",
    "ZOË",
    "Müller",
    "\uff33\uff4d\uff49\uff54\uff48",  # full-width letters: NFKD makes them ASCII
    "Ǆemal",  # a compatibility ligature
    "Straße",  # casefold makes it "strasse"
    "Nguyễn Văn",
]


@pytest.mark.parametrize("name", NAMES)
def test_the_name_key_is_normalise_names_for_every_name(name: str) -> None:
    assert name_and_dates(name, "1960-01-01", "2026-01-02") == f"{normalise_name(name)}|1960-01-01|2026-01-02"


def test_names_differing_only_in_case_accents_and_spacing_share_a_key() -> None:
    keys = {name_and_dates(n, "1960-01-01", "2026-01-02") for n in ("Zoe Smith", "ZOË  smith", "zoe\tSMITH")}
    assert keys == {"zoe smith|1960-01-01|2026-01-02"}
