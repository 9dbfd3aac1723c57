"""Every look at a case is attributable (issue 15, item 6): each service's read of a case (personal
details with the reason given, the case, its review, an action agreed for it, a read type a service adds
later on the case's reads stream) and the audit's own (history, an export with its reason) are in the
access log the IG officer reads, by case and by person, with who, role, from which service, what, when."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from events import Actor, Envelope
from events.topics import service_topic
from services.audit.app import definition
from tests.support.service import running_service
from tests.support.waiting import eventually, publish_raw

START = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
WHY_VIEWED, WHY_EXPORTED = "to contact the family", "subject access request"


class Source:
    """One service's events as it would publish them: a gapless sequence, streams versioned in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sequence = 0
        self.versions: dict[str, int] = {}
        self.made: list[Envelope] = []

    def event(
        self, event_type: str, stream_id: str, case_id: UUID, actor: Actor, data: dict[str, Any]
    ) -> Envelope:
        self.sequence += 1
        self.versions[stream_id] = self.versions.get(stream_id, 0) + 1
        at = START + timedelta(minutes=self.sequence)
        made = Envelope(
            event_id=uuid4(),
            event_type=event_type,
            schema_version=1,
            stream_id=stream_id,
            case_id=case_id,
            stream_version=self.versions[stream_id],
            source=self.name,
            source_sequence=self.sequence,
            occurred_at=at,
            recorded_at=at,
            actor=actor,
            correlation_id="reads",
            data=data,
        )
        self.made.append(made)
        return made

    def read(self, event_type: str, case_id: UUID, actor: Actor, **extra: Any) -> Envelope:
        data = {"case_id": str(case_id), "reader": actor.id, "role": actor.role, **extra}
        return self.event(event_type, f"reads-{case_id}", case_id, actor, data)


def person(user_id: str, role: str) -> Actor:
    return Actor(kind="user", id=user_id, role=role)


RAE, SAM = person("rae", "reviewer"), person("sam", "senior_reviewer")
LUCY, GOV = person("lucy", "lac"), person("gov.sam", "governance")
ALEX = person("alex", "lac")


def the_services(first: UUID, second: UUID, action_id: UUID) -> list[Source]:
    notification, review = Source("notification"), Source("review")
    governance, allocation = Source("governance"), Source("allocation")
    partner = Actor(kind="partner", id="southmead", role="partner_system")
    for case_id, reference in ((first, "LDR-2026-00101"), (second, "LDR-2026-00102")):
        notification.event(
            "notification.CaseOpened",
            str(case_id),
            case_id,
            partner,
            {"case_id": str(case_id), "reference": reference, "review_type": "initial"},
        )
    notification.event(
        "notification.PersonalDetailsViewed",
        str(first),
        first,
        RAE,
        {"case_id": str(first), "viewer": "rae", "role": "reviewer", "reason": WHY_VIEWED},
    )
    notification.read("notification.CaseRead", first, LUCY)
    notification.read("notification.CaseRead", second, RAE)
    review.read("review.ReviewRead", first, SAM)
    review.read("review.ReviewRead", second, RAE)
    review.event(  # a write, not a read: not in the access log
        "review.ReviewPaused",
        str(first),
        first,
        RAE,
        {"case_id": str(first), "reason": "awaiting_records", "paused_on": "2026-10-06"},
    )
    governance.read("governance.CaseRead", first, GOV, what="action", action_id=str(action_id))
    # A read a service records later, of a type the audit service has never heard of: the reads stream
    # it is on says what it is.
    allocation.read("allocation.CaseAllocationRead", first, ALEX)
    return [notification, review, governance, allocation]


async def test_every_read_of_a_case_from_every_service_is_in_the_access_log_by_case_and_by_person(
    database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    first, second, action_id = uuid4(), uuid4(), uuid4()
    sources = the_services(first, second, action_id)
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        for source in sources:
            await publish_raw(
                kafka_bootstrap,
                service_topic(source.name, topic_prefix),
                [(e.kafka_key, e.canonical()) for e in source.made],
            )
        published = sum(len(s.made) for s in sources)

        async def all_logged() -> bool:
            return bool(await audit.runtime.pool.fetchval("SELECT count(*) FROM audit_log") >= published)

        await eventually(all_logged, timeout=60)
        ig = audit.headers("ig_officer", "iggy")
        assert (await audit.client.get(f"/audit/cases/{first}/history", headers=ig)).status_code == 200
        exported = await audit.client.get(
            f"/audit/cases/{first}/export", params={"reason": f" {WHY_EXPORTED} "}, headers=ig
        )
        assert exported.status_code == 200, exported.text

        by_case = (await audit.client.get("/audit/access", params={"case_id": str(first)}, headers=ig)).json()
        seen = {
            (x["who"], x["role"], x["service"], x["read"], x["description"], x["reason"])
            for x in by_case["access"]
        }
        assert seen == {
            ("rae", "reviewer", "notification", "personal_details", "viewed personal details", WHY_VIEWED),
            ("lucy", "lac", "notification", "case", "read the case", None),
            ("sam", "senior_reviewer", "review", "review", "read the review", None),
            ("gov.sam", "governance", "governance", "action", "read an action agreed for the case", None),
            ("alex", "lac", "allocation", "case_allocation_read", "case allocation read", None),
            ("iggy", "ig_officer", "audit", "history", "read the case history", None),
            ("iggy", "ig_officer", "audit", "export", "downloaded the case export with proofs", WHY_EXPORTED),
        }
        for entry in by_case["access"]:
            assert (entry["case_id"], entry["reference"]) == (str(first), "LDR-2026-00101")
            assert entry["when"] == entry["occurred_at"] and entry["actor_kind"] == "user"
        governance = next(x for x in by_case["access"] if x["service"] == "governance")
        assert governance["event_type"] == "governance.CaseRead"
        assert datetime.fromisoformat(governance["when"]) == START + timedelta(minutes=1)

        by_person = (await audit.client.get("/audit/access", params={"user": "rae"}, headers=ig)).json()
        looked = [(x["reference"], x["service"], x["read"]) for x in by_person["access"]]
        assert sorted(looked) == [  # the services' topics are read side by side: log order varies
            ("LDR-2026-00101", "notification", "personal_details"),
            ("LDR-2026-00102", "notification", "case"),
            ("LDR-2026-00102", "review", "review"),
        ]
        both = await audit.client.get(
            "/audit/access", params={"user": "rae", "case_id": str(second)}, headers=ig
        )
        assert sorted(x["read"] for x in both.json()["access"]) == ["case", "review"]
