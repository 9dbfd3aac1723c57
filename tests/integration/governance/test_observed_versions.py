"""The governance service keeps each event it observes with the schema version it was published in,
and its reports read version 1 and version 2 of an event alike (tests/support/versions.py registers a
version 2 of notification.CaseOpened and allocation.ReviewerAllocated, only in this test): the same
history, published first all in version 1 and then half in version 2, gives the same reports."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope
from events.topics import service_topic
from services.governance.app import definition
from tests.support.service import RunningService, running_service
from tests.support.versions import as_version_2, second_versions
from tests.support.waiting import eventually, publish_raw
from tests.unit.test_upcast_reads import CASES, HISTORY

# The service consumes the notification, allocation and review services' events; its own (a QA
# decision, a closure) it records itself, so they are not published to it here.
OBSERVED = [e for e in HISTORY if not e[0].startswith("governance.")]
REPORTS = [
    ("/reports/activity", {"from": "2026-01-01", "to": "2026-12-31"}),
    ("/reports/kpis", {"month": "2026-03"}),
    ("/reports/annual", {"year": "2026"}),
]


@pytest.fixture
async def gov(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    with second_versions():
        async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as svc:
            yield svc


def _envelopes(in_version_2: set[UUID], run: str) -> list[Envelope]:
    """The history as its producers publish it, each case's events on a stream of the run's own (so a
    second run is news to the inbox), those of the cases in `in_version_2` at version 2."""
    out, versions, sequences = [], dict[str, int](), dict[str, int]()
    for event_type, case, on, data in OBSERVED:
        source, stream = event_type.split(".")[0], f"{case}-{run}"
        version, published = as_version_2(event_type, data) if case in in_version_2 else (1, data)
        versions[f"{source}/{stream}"] = versions.get(f"{source}/{stream}", 0) + 1
        sequences[source] = sequences.get(source, 0) + 1
        at = datetime.combine(on, time(12), UTC) + timedelta(seconds=sequences[source])
        out.append(
            Envelope(
                event_id=uuid4(),
                event_type=event_type,
                schema_version=version,
                stream_id=stream,
                case_id=case,
                stream_version=versions[f"{source}/{stream}"],
                source=source,
                source_sequence=sequences[source],
                occurred_at=at,
                recorded_at=at,
                actor=Actor.system(source),
                correlation_id=run,
                data=published,
            )
        )
    return out


async def _observe(gov: RunningService, envelopes: list[Envelope], bootstrap: str, prefix: str) -> None:
    for source in ("notification", "allocation", "review"):
        messages: list[tuple[bytes | None, bytes]] = [
            (e.kafka_key, e.canonical()) for e in envelopes if e.source == source
        ]
        await publish_raw(bootstrap, service_topic(source, prefix), messages)

    async def all_observed() -> bool:
        count = await gov.runtime.pool.fetchval(
            "SELECT count(*) FROM observed_events WHERE event_id = ANY($1::uuid[])",
            [e.event_id for e in envelopes],
        )
        return bool(count == len(envelopes))

    await eventually(all_observed, timeout=90)


async def _reports(gov: RunningService) -> list[Any]:
    answers = []
    for path, params in REPORTS:
        response = await gov.client.get(path, params=params, headers=gov.headers("lac"))
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


async def test_reports_are_the_same_for_a_history_in_version_1_and_one_half_in_version_2(
    gov: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    first = _envelopes(set(), "v1")
    await _observe(gov, first, kafka_bootstrap, topic_prefix)
    in_version_1 = await _reports(gov)
    assert in_version_1[0]["allocated"] == len(CASES)  # the history's figures, not an empty report's

    await gov.runtime.pool.execute("DELETE FROM observed_events")
    second = _envelopes(set(CASES[::2]), "mixed")
    await _observe(gov, second, kafka_bootstrap, topic_prefix)
    kept = {
        r["event_id"]: r["schema_version"]
        for r in await gov.runtime.pool.fetch("SELECT event_id, schema_version FROM observed_events")
    }
    assert kept == {e.event_id: e.schema_version for e in second}
    assert sorted(set(kept.values())) == [1, 2]
    assert await _reports(gov) == in_version_1
