"""1,000 generated bad notifications on each door: none opens a case, each error names its field,
and the service keeps going."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.partner import nhs_number_is_valid
from events.sealing import Sealed
from events.topics import dlq, partner_topic
from services.notification.app import definition
from tests.support.notifications import DELETE, clone, notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic

REQUIRED = [
    "notification_id",
    "schema_version",
    "notifier",
    "notifier.organisation",
    "notifier.role",
    "notifier.name",
    "person",
    "person.given_name",
    "person.family_name",
    "person.date_of_birth",
    "person.sex",
    "person.ethnicity",
    "person.postcode",
    "person.learning_disability",
    "person.learning_disability_level",
    "person.autism",
    "person.accommodation_type",
    "person.opted_out_of_secondary_use",
    "death",
    "death.date_of_death",
    "death.place_of_death",
    "circumstances",
    "circumstances.concerns_about_care",
    "circumstances.likely_learning",
]
CODED = [
    "person.sex",
    "person.ethnicity",
    "person.learning_disability_level",
    "person.accommodation_type",
    "death.place_of_death",
    "notifier.role",
]
TEXT = [
    "person.given_name",
    "person.family_name",
    "notifier.organisation",
    "notifier.name",
    "death.cause_of_death",
    "circumstances.concerns_details",
    "next_of_kin.name",
    "next_of_kin.relationship",
]
TYPED = {
    "person.learning_disability": "yes",
    "circumstances.likely_learning": "maybe",
    "person.date_of_birth": 19610514,
    "death.date_of_death": "03/10/2026",
    "organisations_involved": "Southmead",
    "notification_id": "not-a-uuid",
    "schema_version": 2,
}

Mutation = tuple[str, Any]  # the field the error must name, and the notification (or raw bytes)


def _with(path: str, value: Any) -> dict[str, Any]:
    return notification(**{path: value})


mutations: st.SearchStrategy[Mutation] = st.one_of(
    st.sampled_from(REQUIRED).map(lambda p: (p, _with(p, DELETE))),
    st.tuples(st.sampled_from(CODED), st.text(min_size=0, max_size=12))
    .filter(
        lambda pv: (
            pv[1] not in ("female", "male", "other", "unknown", "A", "B", "C", "Z", "99", "mild", "hospital")
        )
    )
    .map(lambda pv: (pv[0], _with(*pv))),
    st.text(alphabet="0123456789", min_size=10, max_size=10)
    .filter(lambda d: not nhs_number_is_valid(d))
    .map(lambda d: ("person.nhs_number", _with("person.nhs_number", d))),
    st.text(min_size=1, max_size=12)
    .filter(lambda t: not t.replace(" ", "").isdigit())
    .map(lambda t: ("person.nhs_number", _with("person.nhs_number", t))),
    st.integers(1, 3000).map(
        lambda d: (
            "death.date_of_death",
            _with("death.date_of_death", (datetime.now(UTC).date() + timedelta(days=d)).isoformat()),
        )
    ),
    st.integers(1, 20000).map(
        lambda d: (
            "death.date_of_death",
            _with("death.date_of_death", (datetime(1961, 5, 14).date() - timedelta(days=d)).isoformat()),
        )
    ),
    st.text(max_size=12)
    .filter(lambda t: not t.strip() or len(t.replace(" ", "")) < 5 or t.isdigit())
    .map(lambda t: ("person.postcode", _with("person.postcode", t))),
    st.tuples(st.sampled_from(TEXT), st.integers(4001, 9000)).map(
        lambda pv: (pv[0], _with(pv[0], "é" * pv[1]))
    ),
    st.tuples(
        st.sampled_from(["", "person.", "death.", "notifier."]),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12),
    )
    .filter(
        lambda pn: (
            pn[1]
            not in {
                "notification_id",
                "person",
                "death",
                "notifier",
                "circumstances",
                "sex",
                "name",
                "role",
                "email",
                "phone",
                "postcode",
                "autism",
                "ethnicity",
                "organisation",
                "cause_of_death",
                "schema_version",
                "next_of_kin",
                "given_name",
                "family_name",
                "date_of_birth",
                "date_of_death",
                "nhs_number",
                "gp_practice_code",
                "place_of_death",
                "accommodation_type",
                "organisations_involved",
                "learning_disability",
                "learning_disability_level",
                "opted_out_of_secondary_use",
                "place_of_death_organisation",
            }
        )
    )
    .map(lambda pn: (pn[0] + pn[1], _with(pn[0] + pn[1], "surprise"))),
    st.sampled_from(sorted(TYPED)).map(lambda p: (p, _with(p, TYPED[p]))),
    st.binary(max_size=40).filter(lambda b: not b.strip().startswith(b"{")).map(lambda b: ("(body)", b)),
)


def generate(n: int) -> list[Mutation]:
    found: list[Mutation] = []

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutations)
    def collect(mutation: Mutation) -> None:
        found.append(mutation)

    collect()
    return found


def raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def named(errors: list[dict[str, str]], field: str) -> bool:
    return any(
        e["field"] == field
        or e["field"].startswith(field + ".")
        or field.startswith(e["field"] + ".")
        or (field == "(body)")
        for e in errors
    )


BAD = generate(1000)


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


def test_the_generator_makes_a_thousand_bad_notifications_of_every_kind() -> None:
    assert len(BAD) >= 1000
    assert {field.split(".")[0] for field, _ in BAD} >= {
        "person",
        "death",
        "notifier",
        "(body)",
        "notification_id",
    }


async def test_a_thousand_bad_notifications_over_http_are_each_refused_naming_the_field(
    svc: RunningService,
) -> None:
    headers = {**svc.headers("partner_system"), "content-type": "application/json"}
    for field, body in BAD:
        response = await svc.client.post("/notifications", content=raw(body), headers=headers)
        assert response.status_code == 422, (field, response.text)
        problem = response.json()
        assert problem["code"] == "validation_failed" and problem["errors"], problem
        assert all(e["field"] for e in problem["errors"])
        assert named(problem["errors"], field), (field, problem["errors"])
    assert await svc.runtime.store.last_sequence() == 0
    good = await svc.client.post("/notifications", json=notification(), headers=headers)
    assert good.status_code == 201


async def test_a_thousand_bad_notifications_on_the_partner_topic_go_to_its_dlq_naming_the_field(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = partner_topic(topic_prefix)
    good = notification()
    await publish_raw(kafka_bootstrap, topic, [(b"k", raw(body)) for _, body in BAD] + [(b"k", raw(good))])
    dead = await read_topic(kafka_bootstrap, dlq(topic), at_least=len(BAD), timeout=180)

    async def good_opened() -> bool:
        return bool(await svc.runtime.pool.fetchval("SELECT count(*) FROM cases"))

    await eventually(good_opened, timeout=60)
    assert len(dead) == len(BAD)
    async with svc.runtime.pool.acquire() as conn:
        for (field, body), record in zip(BAD, dead, strict=True):
            # The DLQ keeps each notification sealed under a key of its own, the reason in clear.
            sealed = Sealed.model_validate_json(record.value)
            assert await svc.runtime.keys.open_bytes(conn, sealed) == raw(body)
            assert dict(record.headers)["dlq_sealed"] == b"true"
            errors = json.loads(dict(record.headers)["dlq_reason"])
            assert named(errors, field), (field, errors)
    assert await svc.runtime.store.last_sequence() == 1  # the good one's CaseOpened, nothing else
    _ = clone
