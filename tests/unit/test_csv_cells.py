"""Every CSV the system writes neutralises a cell a spreadsheet would run (CSV injection, issue 16):
the audit export's and the governance reports'."""

import csv
import io
from datetime import UTC, datetime
from uuid import uuid4

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import Actor, Envelope
from infra.csvcells import FORMULA_STARTS, csv_text, neutralised
from services.audit import export, log, merkle
from services.governance.rendering import to_csv

ATTACK = "=cmd|' /C calc'!A0"


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_a_cell_starting_like_a_formula_gets_a_leading_quote_and_nothing_else_changes() -> None:
    for start in FORMULA_STARTS:
        assert neutralised(start + "1+1") == "'" + start + "1+1"
    assert [neutralised(x) for x in ("rae", "a=b", None, 3, -3, 1.5)] == ["rae", "a=b", "", "3", "-3", "1.5"]
    assert rows(csv_text([["@SUM(A1)", "-2+3", "\tx", "\rx", 7]])) == [
        ["'@SUM(A1)", "'-2+3", "'\tx", "'\rx", "7"]
    ]


def test_a_formula_in_free_text_comes_out_of_the_audit_export_csv_neutralised() -> None:
    case_id = uuid4()
    at = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    e = Envelope(
        event_id=uuid4(), event_type="notification.PersonalDetailsViewed", schema_version=1,
        stream_id=f"reads-{case_id}", case_id=case_id, stream_version=1, source="notification",
        source_sequence=1, occurred_at=at, recorded_at=at,
        actor=Actor(kind="partner", id=ATTACK, role="+partner"), correlation_id="c",
        data={"case_id": str(case_id), "reason": ATTACK},
    )  # fmt: skip
    leaf = merkle.leaf_hash(e.canonical())
    key = Ed25519PrivateKey.generate()
    signature = key.sign(log.checkpoint_message(1, leaf, at))
    checkpoint = log.Checkpoint(1, leaf, at, signature, log.public_bytes(key))
    made = export.build(case_id, [(0, e)], checkpoint, [leaf])
    table = rows(made.files[f"{case_id}.csv"].decode())
    assert table[1][2:4] == ["'" + ATTACK, "'+partner"]
    assert not any(cell.startswith(FORMULA_STARTS) for row in table for cell in row)


def test_a_formula_in_a_governance_report_comes_out_of_its_csv_neutralised() -> None:
    report = {"title": ATTACK, "themes": ["@theme", "-x"], "count": -2}
    table = rows(to_csv(report))
    assert ["title", "'" + ATTACK] in table and ["count", "-2"] in table  # a number stays a number
    text = [cell for row in table for cell in row if cell != "-2"]
    assert not any(cell.startswith(FORMULA_STARTS) for cell in text)
