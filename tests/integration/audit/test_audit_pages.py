"""What the IG officer's pages read from the audit service: a case found by its reference, its
history in words with people's names, its export as a download, the access log and the verification."""

import csv
import io
import json
import string
import zipfile
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from events import Actor, Envelope, registered_events
from events.topics import SERVICES, service_topic
from infra.csvcells import neutralised
from services.audit.app import definition
from services.audit.cli import _verify_proof
from services.audit.replay import SUMMARIES, summary
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw

REFERENCE = "LDR-2026-00042"
START = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
SOUTHMEAD = Actor(kind="partner", id="southmead", role="partner_system")
RAE = Actor(kind="user", id="rae", role="reviewer")
LAC = Actor(kind="user", id="lucy", role="lac")
_MINUTES = count(1)
NAMES = {"rae": "Rae Jones", "sam": "Sam Patel"}
FORMULA = Actor(kind="partner", id='=HYPERLINK("http://evil.example")', role="partner_system")


def envelope(
    source: str, sequence: int, event_type: str, data: dict[str, Any], actor: Actor, case_id: UUID | None
) -> Envelope:
    at = START + timedelta(minutes=next(_MINUTES))  # in the order they are made
    return Envelope(
        event_id=uuid4(),
        event_type=event_type,
        schema_version=1,
        stream_id=f"{source}-{uuid4()}",  # a stream each: the inbox keeps a stream's versions in order
        case_id=case_id,
        stream_version=1,
        source=source,
        source_sequence=sequence,
        occurred_at=at,
        recorded_at=at,
        actor=actor,
        correlation_id="pages",
        data=data,
    )


async def publish(kafka_bootstrap: str, topic_prefix: str, envelopes: list[Envelope]) -> None:
    for source in {e.source for e in envelopes}:
        await publish_raw(
            kafka_bootstrap,
            service_topic(source, topic_prefix),
            [(e.kafka_key, e.canonical()) for e in envelopes if e.source == source],
        )


def a_case(case_id: UUID) -> list[Envelope]:
    reviewer = str(uuid4())
    return [
        envelope(
            "notification",
            1,
            "notification.CaseOpened",
            {"case_id": str(case_id), "reference": REFERENCE, "review_type": "focused", "personal": {"x": 1}},
            SOUTHMEAD,
            case_id,
        ),
        envelope(
            "allocation",
            1,
            "allocation.ReviewerRegistered",
            {"reviewer_id": reviewer, "user_id": "rae", "name": "Rae Jones", "senior": False},
            LAC,
            None,
        ),
        envelope(
            "allocation",
            2,
            "allocation.ReviewerAllocated",
            {"case_id": str(case_id), "reviewer_user_id": "rae", "senior_reviewer_user_id": "sam"},
            LAC,
            case_id,
        ),
        envelope(
            "notification",
            2,
            "notification.PersonalDetailsViewed",
            {
                "case_id": str(case_id),
                "viewer": "rae",
                "role": "reviewer",
                "reason": "=to contact the family",
            },
            RAE,
            case_id,
        ),
        envelope(
            "notification",
            3,
            "notification.EligibilityConfirmed",
            {"case_id": str(case_id), "learning_disability": True, "autism": False},
            FORMULA,
            case_id,
        ),
        envelope(
            "review",
            1,
            "review.ReviewPaused",
            {
                "case_id": str(case_id),
                "reason": "coroners_investigation_or_inquest",
                "paused_on": "2026-10-06",
            },
            RAE,
            case_id,
        ),
    ]


async def test_the_ig_officers_pages_find_a_case_by_reference_and_read_it_in_words(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    case_id = uuid4()
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        envelopes = a_case(case_id)
        await publish(kafka_bootstrap, topic_prefix, envelopes)

        async def all_logged() -> bool:
            n = await audit.runtime.pool.fetchval("SELECT count(*) FROM audit_log")
            return bool(n >= len(envelopes))

        await eventually(all_logged, timeout=60)
        ig, lac = audit.headers("ig_officer", "iggy"), audit.headers("lac", "lucy")
        await finds_the_case(audit, case_id, ig, lac)
        await reads_the_history_and_state(audit, case_id, ig, lac)
        await downloads_the_export(audit, case_id, ig, lac, tmp_path)
        await reads_the_access_log(audit, case_id, ig)
        await reads_the_verification(audit, ig, lac)


async def finds_the_case(
    audit: RunningService, case_id: UUID, ig: dict[str, str], lac: dict[str, str]
) -> None:
    found = {"case_id": str(case_id), "reference": REFERENCE}
    for params, headers in (
        ({"reference": REFERENCE}, ig),
        ({"q": REFERENCE.lower()}, lac),
        ({"q": f" {case_id} "}, ig),
    ):
        response = await audit.client.get("/audit/cases", params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == found
    for params, status, code in (
        ({"q": "LDR-2026-99999"}, 404, "unknown_case"),
        ({"q": str(uuid4())}, 404, "unknown_case"),
        ({"q": "robert'); drop table audit_log"}, 422, "bad_case_reference"),
        ({}, 422, "case_wanted"),
    ):
        response = await audit.client.get("/audit/cases", params=params, headers=ig)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
    refused = await audit.client.get(
        "/audit/cases", params={"q": REFERENCE}, headers=audit.headers("reviewer")
    )
    assert refused.status_code == 403


async def reads_the_history_and_state(
    audit: RunningService, case_id: UUID, ig: dict[str, str], lac: dict[str, str]
) -> None:
    history = (await audit.client.get(f"/audit/cases/{case_id}/history", headers=ig)).json()
    assert history["reference"] == REFERENCE
    entries = history["entries"]
    assert [e["event_type"] for e in entries][:5] == [
        "notification.CaseOpened",
        "allocation.ReviewerAllocated",
        "notification.PersonalDetailsViewed",
        "notification.EligibilityConfirmed",
        "review.ReviewPaused",
    ]
    by_type = {e["event_type"]: e for e in entries}
    allocated = by_type["allocation.ReviewerAllocated"]
    assert allocated["summary"] == "allocated to Rae Jones, senior sam"
    assert (allocated["who"], allocated["role"], allocated["actor_kind"], allocated["source"]) == (
        "lucy",
        "lac",
        "user",
        "allocation",
    )
    assert isinstance(allocated["position"], int) and allocated["occurred_at"] and allocated["recorded_at"]
    viewed = by_type["notification.PersonalDetailsViewed"]
    assert viewed["who_name"] == "Rae Jones"
    assert by_type["review.ReviewPaused"]["summary"] == "review paused (coroners investigation or inquest)"
    assert by_type["notification.EligibilityConfirmed"]["summary"] == "eligibility confirmed"
    assert by_type["audit.AuditLogRead"]["summary"].startswith("audit log: ")  # the look-ups of the case
    redacted = (await audit.client.get(f"/audit/cases/{case_id}/history", headers=lac)).json()
    assert redacted["entries"][0]["data"]["personal"] == "[sealed personal data withheld]"
    state = (
        await audit.client.get(
            f"/audit/cases/{case_id}/state", params={"as_of": START.isoformat()}, headers=ig
        )
    ).json()
    assert (state["reference"], state["status"]) == (REFERENCE, "unknown")  # named before it opened
    bad = await audit.client.get(f"/audit/cases/{case_id}/state", params={"as_of": "soon"}, headers=ig)
    assert bad.status_code == 422


async def downloads_the_export(
    audit: RunningService, case_id: UUID, ig: dict[str, str], lac: dict[str, str], tmp_path: Path
) -> None:
    response = await audit.client.get(f"/audit/cases/{case_id}/export", headers=ig)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == (f'attachment; filename="{REFERENCE}-audit-export.zip"')
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == sorted(
        [f"{case_id}.jsonl", f"{case_id}.csv", f"{case_id}.checkpoint.json"]
    )
    lines = [json.loads(line) for line in archive.read(f"{case_id}.jsonl").decode().splitlines()]
    checkpoint = json.loads(archive.read(f"{case_id}.checkpoint.json"))
    assert lines and all(line["tree_size"] == checkpoint["tree_size"] for line in lines)  # every one proved
    assert any("audit.AuditLogRead" in line["envelope"] and '"export"' in line["envelope"] for line in lines)
    signed = tmp_path / "checkpoint.json"
    signed.write_bytes(archive.read(f"{case_id}.checkpoint.json"))
    for line in lines:
        proof = tmp_path / "line.json"
        proof.write_text(json.dumps(line))
        assert _verify_proof(type("Args", (), {"file": str(proof), "checkpoint": str(signed)})(), None) == 0
    rows = list(csv.reader(io.StringIO(archive.read(f"{case_id}.csv").decode())))
    assert rows[0][:5] == ["position", "occurred_at", "who", "role", "event_type"]
    cells = [cell for row in rows for cell in row]
    assert """'=HYPERLINK("http://evil.example")""" in cells
    assert "personal details viewed: =to contact the family" in cells  # not at the start: left alone
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert (await audit.client.get(f"/audit/cases/{case_id}/export", headers=lac)).status_code == 403
    missing = await audit.client.get(f"/audit/cases/{uuid4()}/export", headers=ig)
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_case"


async def reads_the_access_log(audit: RunningService, case_id: UUID, ig: dict[str, str]) -> None:
    response = await audit.client.get("/audit/access", params={"case_id": str(case_id)}, headers=ig)
    access = response.json()["access"]
    assert response.json()["next_after"] is None
    viewed = access[0]
    assert viewed["event_type"] == "notification.PersonalDetailsViewed"
    assert (viewed["who"], viewed["who_name"], viewed["role"]) == ("rae", "Rae Jones", "reviewer")
    assert (viewed["read"], viewed["description"], viewed["reason"]) == (
        "personal_details",
        "viewed personal details",
        "=to contact the family",
    )
    assert (viewed["case_id"], viewed["reference"]) == (str(case_id), REFERENCE)
    reads = {(x["who"], x["read"], x["description"]) for x in access[1:]}
    assert ("iggy", "history", "read the case history") in reads
    assert ("iggy", "export", "downloaded the case export with proofs") in reads
    assert ("lucy", "find case", "looked up a case") in reads
    assert any(
        x["read"] == "state" and x["as_of"] and x["description"].startswith("viewed the case as")
        for x in access
    )
    assert all(x["reference"] == REFERENCE for x in access)
    pages: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params: dict[str, Any] = {"user": "iggy", "limit": 2} | (
            {"after": after} if after is not None else {}
        )
        page = (await audit.client.get("/audit/access", params=params, headers=ig)).json()
        pages += page["access"]
        after = page["next_after"]
        if after is None:
            break
    assert len(pages) > 2 and all(x["who"] == "iggy" for x in pages)
    assert [x["position"] for x in pages] == sorted({x["position"] for x in pages})
    too_many = await audit.client.get("/audit/access", params={"limit": 100_000}, headers=ig)
    assert too_many.status_code == 422


async def reads_the_verification(audit: RunningService, ig: dict[str, str], lac: dict[str, str]) -> None:
    latest = (await audit.client.get("/audit/checkpoints/latest", headers=ig)).json()
    assert latest["signature_valid"] is True and len(latest["key_fingerprint"]) == 64
    assert latest["key_id"] == latest["key_fingerprint"][:16]
    signed = (await audit.client.post("/audit/checkpoints", headers=ig)).json()
    first, second = [(await audit.client.get("/audit/verification", headers=ig)).json() for _ in range(2)]
    for result in (first, second):
        assert result["ok"] is True and result["first_bad_position"] is None, result
        assert result["entries"] >= signed["tree_size"] and result["root_hash"]
        assert result["checkpoint"]["tree_size"] == result["checkpoint_tree_size"]
        assert result["checkpoint"]["key_fingerprint"] == latest["key_fingerprint"]
        assert result["checked_at"]
    assert (await audit.client.get("/audit/verification", headers=lac)).status_code == 403


def test_a_csv_cell_a_spreadsheet_would_run_is_neutralised() -> None:
    for cell in ("=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert neutralised(cell) == "'" + cell
    assert [neutralised(x) for x in ("rae", "", None, 3, "a=b")] == ["rae", "", "", "3", "a=b"]


def test_every_registered_event_type_reads_in_words_from_its_own_fields() -> None:
    """A history line for every kind of event there is (none falls back to its type's name split into
    words), each template naming only fields its event has, so none falls back for a missing field."""
    services = [t for t in registered_events() if t.split(".")[0] in SERVICES]  # not tests' own events
    missing = sorted(set(services) - set(SUMMARIES))
    assert missing == [], f"event types with no summary: {missing}"
    for event_type, template in SUMMARIES.items():
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        unknown = fields - set(registered_events()[event_type].model_fields)
        assert not unknown, f"{event_type}'s summary names {unknown}, not fields of the event"


def test_the_closure_and_reopening_of_a_case_read_in_words_in_every_service() -> None:
    case = uuid4()
    lines = {
        event_type: summary(envelope(event_type.split(".")[0], 1, event_type, data, LAC, case), NAMES)
        for event_type, data in [
            ("governance.CaseReopened", {"case_id": str(case), "reason": "new evidence"}),
            ("notification.CaseClosureRecorded", {"case_id": str(case), "closed_on": "2026-10-05"}),
            ("notification.CaseReopeningRecorded", {"case_id": str(case), "reason": "new evidence"}),
            (
                "review.ReviewReopened",
                {"case_id": str(case), "reason": "new evidence", "reopened_on": "2026-10-06"},
            ),
            (
                "allocation.AllocationRestored",
                {
                    "case_id": str(case),
                    "reviewer_id": str(uuid4()),
                    "reviewer_user_id": "rae",
                    "senior_reviewer_id": str(uuid4()),
                    "senior_reviewer_user_id": "sam",
                    "restored_on": "2026-10-06",
                    "reason": "new evidence",
                },
            ),
        ]
    }
    assert lines == {
        "governance.CaseReopened": "case reopened: new evidence",
        "notification.CaseClosureRecorded": "case closed on 2026-10-05 (noted by the notification service)",
        "notification.CaseReopeningRecorded": "case reopened (noted by the notification service):"
        " new evidence",
        "review.ReviewReopened": "review reopened, back with its reviewer: new evidence",
        "allocation.AllocationRestored": "allocation restored to Rae Jones, senior Sam Patel, as the case"
        " was reopened",
    }


def test_a_sealed_text_reads_as_sealed_in_a_history_line_never_as_its_ciphertext() -> None:
    case = uuid4()
    sealed = {"key_id": "k1", "nonce": "bm9uY2U=", "ciphertext": "c2VjcmV0"}
    line = summary(
        envelope(
            "review",
            1,
            "review.SafeguardingReferralMade",
            {"case_id": str(case), "to": sealed, "on": "2026-10-06", "why": sealed},
            RAE,
            case,
        ),
        NAMES,
    )
    assert line == "safeguarding referral made to [sealed]"
