"""Realistic cases for the benches: LeDeR cases run through the four case services' own code, in one
process, without a broker.

Every command goes through the service's own handlers and domain code (what its HTTP API calls), and
every event a service records is handed, in sequence order, to the inbox consumer of each service
that subscribes to its topic, as Kafka would hand it over. So each event store holds the mix of
events real cases make, and each service's projections are built by the appends themselves.
bench/rebuild.py rebuilds those projections; bench/audit.py copies these cases to fill its log."""

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any, TypeVar
from uuid import UUID, uuid4

from events import Actor, EventPayload
from events.partner import EthnicCategory, parse_notification
from events.review import (
    CareJudged,
    CauseOfDeathRecorded,
    ContactRecorded,
    FamilyInvolvementRecorded,
    GoodPracticeRecorded,
    LapseInCareRecorded,
    LearningRecorded,
    NoteAdded,
    PauseReason,
    PenPortraitWritten,
    RecommendationRecorded,
    RecordsReceived,
    RecordsRequested,
    SafeguardingReferralMade,
)
from events.topics import service_topic
from infra import db, kafka
from infra.eventstore import ConcurrencyError, Context, EventStore
from infra.inbox import Delivery, InboxConsumer
from infra.relay import OutboxRelay
from infra.sealing import for_service
from infra.service import Runtime, ServiceDefinition, open_store
from infra.settings import Settings, database_url_for
from leder.people import nhs_number_for
from leder.people import notification as partner_notification
from services.allocation import domain as allocation_domain
from services.allocation import handlers as allocation
from services.allocation.app import definition as allocation_service
from services.governance import domain as governance_domain
from services.governance import handlers as governance
from services.governance.app import definition as governance_service
from services.notification import domain as notification_domain
from services.notification import handlers as notification
from services.notification.app import definition as notification_service
from services.review import domain as review_domain
from services.review import handlers as review
from services.review import texts as review_texts
from services.review.app import definition as review_service
from services.review.texts import Sealer
from services.review.vocabulary import THEMES, THEMES_VERSION, care_scale

SERVICES: dict[str, ServiceDefinition] = {
    "notification": notification_service,
    "allocation": allocation_service,
    "review": review_service,
    "governance": governance_service,
}
LAC = Actor(kind="user", id="lac-alex", role="lac")
PANEL = Actor(kind="user", id="panel-chair", role="qa_panel")
GOVERNANCE = Actor(kind="user", id="governance-lead", role="governance")
SYSTEM = Actor.system("retention")
NOTIFIERS = [
    ("Southmead Hospital", "hospital", "Dr Asha Patel"),
    ("Bristol Royal Infirmary", "hospital", "Dr Tom Hughes"),
    ("Weston General Hospital", "hospital", "Sister Jane Lee"),
    ("Cedars Surgery", "gp", "Dr Sam Okafor"),
    ("Brunswick Care Ltd", "care_provider", "Mo Ahmed"),
    ("Milestones Trust", "care_provider", "Kerry Jones"),
]
INVOLVED = [
    "Southmead Hospital",
    "Bristol Royal Infirmary",
    "Weston General Hospital",
    "Cedars Surgery",
    "Brunswick Care Ltd",
    "Milestones Trust",
    "St Peter's Hospice",
]
REVIEWER_EMPLOYERS = ["Sirona Care", "Bristol City Council", "South Gloucestershire Council", "AWP"]
FAMILY_NAMES = ["O'Brien", "Smith", "Khan", "Nowak", "Williams", "Jones", "Begum", "Taylor", "Evans", "Ng"]
GIVEN_NAMES = ["Zoë", "Jo", "Amir", "Ola", "Peter", "Grace", "Fatima", "Leon", "Ruth", "Kai"]
POSTCODES = ["BS10 5NB", "BS1 4DJ", "BA1 1LN", "GL1 2EH", "BS16 1QY", "BS8 1TH"]
ETHNICITIES = ["B", "C", "D", "H", "J", "M", "N", "R", "S"]
CAUSES = ["aspiration pneumonia", "sepsis", "epilepsy", "bowel obstruction", "heart failure", "cancer"]
PAUSE_REASONS: list[PauseReason] = ["coroners_investigation_or_inquest", "police_investigation"]
RECORDED_ETHNICITIES: list[EthnicCategory] = ["A", "A", "B", "N"]
T = TypeVar("T")


@dataclass(frozen=True)
class Staff:
    reviewer_id: UUID
    user_id: str
    senior: bool
    conflicts: frozenset[str] = frozenset()


@dataclass
class Service:
    store: EventStore
    consumers: list[InboxConsumer[Any]]


@dataclass
class World:
    """The four case services, each on its own fresh database of one PostgreSQL server."""

    services: dict[str, Service]
    urls: dict[str, str]
    seed: int = 7
    staff: list[Staff] = field(default_factory=list)
    delivered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVICES, 0))
    settling: asyncio.Lock = field(default_factory=asyncio.Lock)
    panels: list[UUID] = field(default_factory=list)
    cases: list[UUID] = field(default_factory=list)

    def store(self, name: str) -> EventStore:
        return self.services[name].store

    async def settle(self) -> None:
        """Hand every event recorded so far to its subscribers, until no service records anything
        more in reaction. Each consumer takes a topic's events in sequence order, and consumers run
        side by side, as they do on Kafka."""
        async with self.settling:
            while True:
                batches = {
                    source: await self.store(source).read_all_raw(self.delivered[source], 2000)
                    for source in SERVICES
                }
                if not any(batches.values()):
                    return
                await asyncio.gather(
                    *(
                        _deliver(consumer, service_topic(source, ""), rows)
                        for source, rows in batches.items()
                        if rows
                        for name, service in self.services.items()
                        if name != source
                        for consumer in service.consumers
                        if consumer.topic == service_topic(source, "")
                    )
                )
                for source, rows in batches.items():
                    if rows:
                        self.delivered[source] = rows[-1][0]

    async def counts(self) -> dict[str, int]:
        return {name: await s.store.last_sequence() for name, s in self.services.items()}

    async def close(self, drop: bool = True) -> None:
        for name, s in self.services.items():
            await s.store.pool.close()
            if drop:
                await db.drop_database(self.urls[name])


async def _deliver(consumer: InboxConsumer[Any], topic: str, rows: list[tuple[int, str]]) -> None:
    for sequence, raw in rows:
        await _retrying(partial(consumer.handle, raw.encode(), Delivery(topic, 0, sequence, None, {})))


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """A command or a delivery that met a concurrent change of its stream is tried again, as an HTTP
    client retries a 409 and Kafka redelivers a message whose handling failed."""
    for attempt in range(20):
        try:
            return await call()
        except ConcurrencyError:
            await asyncio.sleep(0.01 * (attempt + 1))
    return await call()


async def open_world(server_url: str, seed: int = 7) -> World:
    tag = uuid4().hex[:8]
    services, urls = {}, {}
    for name, definition in SERVICES.items():
        urls[name] = database_url_for(server_url, f"bench_{name}_{tag}")
        settings = Settings(
            service=name, database_url=urls[name], kafka_bootstrap="127.0.0.1:9", topic_prefix="",
            http_port=0,
        )  # fmt: skip
        store = await open_store(definition, settings)
        # Never started: the consumers are handed their messages directly, and publish nothing.
        runtime = Runtime(
            settings=settings,
            pool=store.pool,
            store=store,
            broker=kafka.broker(settings.kafka_bootstrap),
            relay=OutboxRelay(store, settings.kafka_bootstrap, service_topic(name, "")),
        )
        services[name] = Service(store, list(definition.consumers(runtime)))
    return World(services, urls, seed)


async def hire_staff(world: World, reviewers: int = 16, seniors: int = 6) -> None:
    """Reviewers and senior reviewers, trained; a few with standing conflicts, one away for a while."""
    store = world.store("allocation")
    lac = Context(LAC)
    rng = random.Random(world.seed)
    for i in range(reviewers + seniors):
        senior = i >= reviewers
        user_id = f"{'senior' if senior else 'reviewer'}-{i:02d}"
        employers = rng.sample(REVIEWER_EMPLOYERS, rng.choice([1, 1, 2]))
        reviewer_id = await allocation.register_reviewer(
            store, lac, user_id, f"Reviewer {i}", employers, senior, 60
        )
        trained = date.today() - timedelta(days=rng.randint(1, 300))
        await allocation.command_reviewer(store, reviewer_id, allocation_domain.RecordTraining(trained), lac)
        conflicts: frozenset[str] = frozenset()
        if i % 5 == 1:
            conflicted = rng.choice(INVOLVED)
            await allocation.command_reviewer(
                store, reviewer_id, allocation_domain.RecordConflict("organisation", conflicted), lac
            )
            conflicts = frozenset({conflicted})
        if i % 7 == 3:
            await allocation.deactivate(store, reviewer_id, "on leave", lac)
            await allocation.command_reviewer(store, reviewer_id, allocation_domain.Reactivate(), lac)
        world.staff.append(Staff(reviewer_id, user_id, senior, conflicts))


def _pick(world: World, rng: random.Random, senior: bool, organisations: Sequence[str], not_: str) -> Staff:
    free = [
        s
        for s in world.staff
        if s.senior == senior and s.user_id != not_ and not (s.conflicts & set(organisations))
    ]
    return rng.choice(free)


@dataclass
class Plan:
    """What happens to one notification; drawn at random, or fixed for the long case."""

    outcome: str = "case_opened"
    duplicate: bool = False
    unstated_ethnicity: bool = False
    conflict: bool = False
    reallocation: bool = False
    lapse: bool = False
    pause: bool = False
    returned_by_qa: bool = False
    reopened: bool = False
    destroyed: bool = False
    action: bool = False
    notes: int = 0

    @classmethod
    def draw(cls, rng: random.Random) -> "Plan":
        r = rng.random()
        outcome = (
            "referred_to_cdop"
            if r < 0.04
            else "not_eligible"
            if r < 0.07
            else "confirm"
            if r < 0.11
            else "reject"
            if r < 0.13
            else "case_opened"
        )
        return cls(
            outcome=outcome,
            duplicate=rng.random() < 0.05,
            unstated_ethnicity=rng.random() < 0.08,
            conflict=rng.random() < 0.04,
            reallocation=rng.random() < 0.03,
            lapse=rng.random() < 0.2,
            pause=rng.random() < 0.15,
            returned_by_qa=rng.random() < 0.15,
            reopened=rng.random() < 0.02,
            destroyed=rng.random() < 0.01,
            action=rng.random() < 0.2,
            notes=rng.choice([0, 0, 1, 2, 3, 5]),
        )


def _notification(rng: random.Random, n: int, plan: Plan) -> dict[str, Any]:
    today = date.today()
    died = today - timedelta(days=rng.randint(1, 60))
    age = rng.randint(8, 17) if plan.outcome == "referred_to_cdop" else rng.randint(19, 90)
    born = died.replace(year=died.year - age) - timedelta(days=rng.randint(1, 300))
    organisation, role, name = rng.choice(NOTIFIERS)
    learning_disability: bool | None = True
    autism: bool | None = rng.random() < 0.2
    if plan.outcome == "not_eligible":
        learning_disability, autism = False, False
    elif plan.outcome in ("confirm", "reject"):
        learning_disability, autism = None, rng.choice([None, False])  # a diagnosis not known
    elif rng.random() < 0.06:
        learning_disability, autism = False, True
    concerns = rng.random() < 0.2
    ethnicity = "Z" if plan.unstated_ethnicity else rng.choice(ETHNICITIES) if rng.random() < 0.12 else "A"
    return partner_notification(
        **{
            "notifier.organisation": organisation,
            "notifier.role": role,
            "notifier.name": name,
            "person.nhs_number": nhs_number_for(n) if rng.random() < 0.93 or plan.duplicate else None,
            "person.given_name": rng.choice(GIVEN_NAMES),
            "person.family_name": f"{rng.choice(FAMILY_NAMES)}-{n}",
            "person.date_of_birth": born.isoformat(),
            "person.sex": rng.choice(["female", "male"]),
            "person.ethnicity": ethnicity,
            "person.postcode": rng.choice(POSTCODES),
            "person.learning_disability": learning_disability,
            "person.autism": autism,
            "death.date_of_death": died.isoformat(),
            "death.place_of_death": rng.choice(["hospital", "home", "care_home", "hospice"]),
            "death.place_of_death_organisation": rng.choice(INVOLVED[:3]),
            "death.cause_of_death": rng.choice(CAUSES),
            "circumstances.concerns_about_care": concerns,
            "circumstances.concerns_details": "delay in treatment" if concerns else None,
            "circumstances.family_requested_focused_review": rng.random() < 0.05,
            "circumstances.likely_learning": rng.random() < 0.1,
            "organisations_involved": rng.sample(INVOLVED, rng.randint(1, 3)),
        }
    )


async def notify(world: World, body: dict[str, Any]) -> notification.NotificationResult:
    parsed = parse_notification(body)
    actor = Actor(kind="partner", id=parsed.notifier.organisation, role="partner_system")
    store = world.store("notification")
    async with store.pool.acquire() as conn:
        return await notification.take_notification(store, conn, parsed, Context(actor))


def _review_work(rng: random.Random, case_id: UUID, plan: Plan, sealed: Sealer) -> list[EventPayload]:
    """The review's records, free text sealed as the review API seals it (`sealed`)."""
    today = date.today()

    def day() -> date:
        return today - timedelta(days=rng.randint(0, 40))

    version, names = care_scale()
    orgs = rng.sample(INVOLVED, 2)
    work: list[EventPayload] = [
        ContactRecorded(
            case_id=case_id,
            party="family",
            status=rng.choice(["completed", "completed", "offered", "declined", "not_wanted"]),
            on=day(),
        ),
        ContactRecorded(
            case_id=case_id, party=rng.choice(["gp", "gp_records"]), status="completed", on=day()
        ),
        ContactRecorded(
            case_id=case_id,
            party="professional",
            status="completed",
            on=day(),
            role="learning disability nurse",
            organisation=orgs[0],
        ),
        RecordsRequested(case_id=case_id, source="GP", requested_on=(asked := day())),
        RecordsReceived(case_id=case_id, source="GP", received_on=max(asked, day())),  # never before asked
        PenPortraitWritten(
            case_id=case_id,
            text=sealed("Loved music, Saturday swims and the family dog; " * rng.randint(1, 6)),
        ),
        FamilyInvolvementRecorded(case_id=case_id, step="invited_to_comment", on=day()),
        CauseOfDeathRecorded(
            case_id=case_id,
            cause=sealed(rng.choice(CAUSES)),
            preventable_or_treatable=(p := rng.random() < 0.4),
            avoidable=p and rng.random() < 0.7,
        ),
    ]
    if rng.random() < 0.6:
        work.append(
            ContactRecorded(
                case_id=case_id,
                party="professional",
                status="completed",
                on=day(),
                role="ward sister",
                organisation=orgs[1],
            )
        )
        work.append(RecordsReceived(case_id=case_id, source=orgs[1], received_on=day()))
    for phase in rng.sample(["community", "admission", "final admission", "end of life"], rng.randint(1, 4)):
        work.append(
            CareJudged(
                case_id=case_id,
                phase=phase,
                grade=rng.randint(1, len(names)),
                scale_version=version,
                rationale=sealed("as recorded in the notes; see the pen portrait"),
            )
        )
    themes = sorted(THEMES)
    for _ in range(rng.randint(0, 2)):
        work.append(
            GoodPracticeRecorded(
                case_id=case_id,
                text=sealed("hospital passport used"),
                themes=rng.sample(themes, 1),
                themes_version=THEMES_VERSION,
            )
        )
    for _ in range(rng.randint(1, 3)):
        work.append(
            LearningRecorded(
                case_id=case_id,
                text=sealed("reasonable adjustments to be planned before admission"),
                themes=rng.sample(themes, rng.randint(1, 2)),
                themes_version=THEMES_VERSION,
            )
        )
    for _ in range(rng.randint(0, 3)):
        work.append(
            RecommendationRecorded(
                case_id=case_id, what=sealed("use the sepsis tool"), organisation=rng.choice(orgs)
            )
        )
    if rng.random() < 0.05:
        work.append(
            SafeguardingReferralMade(
                case_id=case_id, to=sealed("Bristol City Council"), on=day(), why=sealed("neglect")
            )
        )
    if plan.lapse:
        work.append(
            LapseInCareRecorded(
                case_id=case_id,
                what=sealed("deterioration not recognised"),
                where=sealed("ward 4"),
                organisation=orgs[0],
                contribution=rng.choice(["contributed", "possibly_contributed", "unknown"]),
            )
        )
    if rng.random() < 0.5:
        work.append(FamilyInvolvementRecorded(case_id=case_id, step="comments_received", on=day()))
    for i in range(plan.notes if plan.notes <= 50 else 0):  # a long case's notes come in batches
        work.append(NoteAdded(case_id=case_id, text=sealed(f"Called the care home again ({i}).")))
    first, rest = work[:3], work[3:]
    rng.shuffle(rest)
    return first + rest


async def _sealer(world: World, case_id: UUID) -> Sealer:
    """The review service's sealer for the case, as its API uses (the review's free text is sealed)."""
    async with world.store("review").pool.acquire() as conn:
        return await review_texts.sealer(for_service("review"), conn, case_id)


async def _load_review(world: World, case_id: UUID) -> review_domain.Review:
    async with world.store("review").pool.acquire() as conn:
        current, _ = await review.load_review(world.store("review"), conn, case_id)
    return current


async def _record(world: World, case_id: UUID, user: str, payloads: Sequence[EventPayload]) -> None:
    """One reviewer command: the payloads checked by the review domain, in one append."""
    context = Context(Actor(kind="user", id=user, role="reviewer"))

    def decide(r: review_domain.Review) -> list[EventPayload]:
        return [e for p in payloads for e in review_domain.decide_record(r, user, p)]

    await _retrying(lambda: review.change_review(world.store("review"), case_id, decide, context))


async def _as_reviewer(world: World, case_id: UUID, user: str, decide: review.Decision) -> None:
    context = Context(Actor(kind="user", id=user, role="reviewer"))
    await _retrying(lambda: review.change_review(world.store("review"), case_id, decide, context))


async def _pause(world: World, case_id: UUID, user: str, reason: PauseReason) -> None:
    """Paused for an inquest: a note meanwhile, then resumed."""
    today = date.today()
    await _as_reviewer(world, case_id, user, lambda r: review_domain.decide_pause(r, user, reason, today))
    note = NoteAdded(case_id=case_id, text=(await _sealer(world, case_id))("Waiting for the inquest."))
    await _record(world, case_id, user, [note])
    await _as_reviewer(world, case_id, user, lambda r: review_domain.decide_resume(r, user, today))


async def _submit(world: World, case_id: UUID, user: str) -> None:
    today = date.today()
    await _as_reviewer(world, case_id, user, lambda r: review_domain.decide_submission(r, user, today))
    await world.settle()


async def _review(world: World, rng: random.Random, case_id: UUID, plan: Plan) -> str:
    """The reviewer's work, to submission; returns who did it."""
    user = (await _load_review(world, case_id)).reviewer_user_id
    sealed = await _sealer(world, case_id)
    work = _review_work(rng, case_id, plan, sealed)
    pause_at = rng.randrange(len(work)) if plan.pause else -1
    for i, payload in enumerate(work):
        if i == pause_at:
            await _pause(world, case_id, user, rng.choice(PAUSE_REASONS))
        await _record(world, case_id, user, [payload])
    for start in range(0, plan.notes if plan.notes > 50 else 0, 50):
        notes = [
            NoteAdded(case_id=case_id, text=sealed(f"Note {n}: chased the records, spoke to the family."))
            for n in range(start, min(start + 50, plan.notes))
        ]
        await _record(world, case_id, user, notes)
    await _complete_for_submission(world, rng, case_id, user)
    await _submit(world, case_id, user)
    return user


async def _complete_for_submission(world: World, rng: random.Random, case_id: UUID, user: str) -> None:
    """What the submission rules still ask for (a review escalated on the way needs more)."""
    missing = review_domain.missing_for_submission(await _load_review(world, case_id))
    today = date.today()
    extra: list[EventPayload] = []
    if "multi_agency_contacts" in missing:
        extra += [
            ContactRecorded(
                case_id=case_id, party="professional", status="completed", on=today,
                role="community nurse", organisation=organisation,
            )
            for organisation in rng.sample(INVOLVED, 2)
        ]  # fmt: skip
    if "records_from_two_sources" in missing:
        extra += [
            RecordsReceived(case_id=case_id, source=source, received_on=today)
            for source in rng.sample(INVOLVED, 2)
        ]
    if extra:
        await _record(world, case_id, user, extra)


async def _qa(world: World, rng: random.Random, case_id: UUID, approve: bool) -> None:
    store = world.store("governance")
    lac = Context(LAC)
    async with world.settling:
        if not world.panels or len(world.cases) % 8 == 0:
            # Held today: a panel decides on or after its date (decided_before_panel otherwise).
            world.panels.append(await governance.schedule_panel(store, date.today(), lac))
        panel_id = world.panels[-1]
    await _retrying(lambda: governance.add_to_agenda(store, case_id, panel_id, lac))
    today = date.today()
    rating = rng.randint(2, 5)
    themes = rng.sample(sorted(THEMES), 2)

    def decide(c: governance_domain.CaseQA) -> list[EventPayload]:
        comments = None if approve else "the family's view is missing"
        return governance_domain.decide_qa(c, panel_id, approve, rating, themes, comments, today)

    await _retrying(
        lambda: governance.cases(store).change(str(case_id), decide, Context(PANEL), case_id=case_id)
    )
    await world.settle()


async def _action(world: World, rng: random.Random, case_id: UUID) -> None:
    store = world.store("governance")
    context = Context(GOVERNANCE)
    today = date.today()
    organisation, due_on = rng.choice(INVOLVED), today + timedelta(days=rng.randint(-30, 120))
    # An action is never due before the day it is agreed: one overdue now was agreed on its due date.
    action_id = await governance.agree_action(
        store, context, today=min(today, due_on), what="Train ward staff in reasonable adjustments",
        organisation=organisation, lead="Head of nursing", due_on=due_on, case_ids=[case_id],
        themes=rng.sample(sorted(THEMES), 1),
    )  # fmt: skip
    stream = governance.action_stream(action_id)
    for _ in range(rng.randint(0, 2)):
        await governance.actions(store).change(
            stream, lambda a: governance_domain.decide_progress(a, "half the ward trained"), context
        )
    if rng.random() < 0.6:
        await governance.actions(store).change(
            stream, lambda a: governance_domain.decide_completion(a, "training register", today), context
        )


async def _view_personal_details(world: World, case_id: UUID, reason: str) -> None:
    """The allocated reviewer looks at the person's details (and that is recorded)."""
    user = (await _load_review(world, case_id)).reviewer_user_id
    await _retrying(
        lambda: notification.personal_details(
            world.store("notification"), case_id, user, "reviewer", reason, str(uuid4())
        )
    )


async def _reopen(world: World, case_id: UUID) -> None:
    await governance.cases(world.store("governance")).change(
        str(case_id),
        lambda c: governance_domain.decide_reopen(c, "new information from the coroner"),
        Context(LAC),
        case_id=case_id,
    )


async def run_case(world: World, n: int, plan: Plan | None = None, qa: bool = True) -> UUID | None:
    """One notification and all that follows from it, through every service; the case, if one opened.
    `qa=False` stops when the review is submitted, before the panel's decision (the long case's)."""
    rng = random.Random(world.seed * 1_000_003 + n)
    plan = plan or Plan.draw(rng)
    body = _notification(rng, n, plan)
    taken = await notify(world, body)
    await world.settle()
    case_id = taken.case_id
    if case_id is None:
        return None
    lac = Context(LAC)
    notifications = world.store("notification")
    if taken.outcome == "eligibility_to_confirm":
        confirm = plan.outcome == "confirm"
        await notification.change_case(
            notifications,
            case_id,
            lambda c: notification_domain.decide_eligibility(c, confirm, True, None, "no diagnosis found"),
            lac,
        )
        await world.settle()
        if not confirm:
            return case_id
    world.cases.append(case_id)
    case_id_ = case_id  # narrowed, for the closures below
    if plan.duplicate:
        again = dict(body, notification_id=str(uuid4()))
        again["notifier"] = dict(body["notifier"], organisation="Cedars Surgery", role="gp")
        await notify(world, again)
    if plan.unstated_ethnicity:
        ethnicity = rng.choice(RECORDED_ETHNICITIES)
        await _retrying(
            lambda: notification.change_case(
                notifications, case_id_, lambda c: notification_domain.decide_ethnicity(c, ethnicity), lac
            )
        )
    await world.settle()
    allocations = world.store("allocation")
    async with allocations.pool.acquire() as conn:
        waiting, _ = await allocation.load_case(allocations, conn, case_id)
    reviewer = _pick(world, rng, False, waiting.organisations_involved, "")
    senior = _pick(world, rng, True, waiting.organisations_involved, "")
    await _retrying(
        lambda: allocation.allocate(
            allocations, case_id_, reviewer.reviewer_id, senior.reviewer_id, date.today(), lac
        )
    )
    await world.settle()
    if plan.conflict or plan.reallocation:
        other = _pick(world, rng, False, waiting.organisations_involved, reviewer.user_id)
        if plan.conflict:
            context = Context(Actor(kind="user", id=reviewer.user_id, role="reviewer"))
            await _retrying(
                lambda: allocation.declare_conflict(
                    allocations, case_id_, reviewer.user_id, "my cousin", context
                )
            )
            await world.settle()
            await _retrying(
                lambda: allocation.allocate(
                    allocations, case_id_, other.reviewer_id, senior.reviewer_id, date.today(), lac
                )
            )
        else:
            await _retrying(
                lambda: allocation.allocate(
                    allocations, case_id_, other.reviewer_id, senior.reviewer_id, date.today(), lac,
                    reallocation_reason="long-term sick leave",
                )
            )  # fmt: skip
        await world.settle()
    for reason in ("to contact the family", "to request records")[: rng.randint(1, 2)]:
        await _view_personal_details(world, case_id, reason)
    user = await _review(world, rng, case_id, plan)
    if plan.returned_by_qa:
        await _qa(world, rng, case_id, approve=False)
        again = (await _sealer(world, case_id))("Spoke to the family again.")
        await _record(world, case_id, user, [NoteAdded(case_id=case_id, text=again)])
        await _submit(world, case_id, user)
    if not qa:
        await world.settle()
        return case_id
    await _qa(world, rng, case_id, approve=True)
    if plan.reopened:
        await _reopen(world, case_id)
    if plan.action:
        await _action(world, rng, case_id)
    if plan.destroyed:
        await notification.destroy_personal_data(notifications, case_id, 20, Context(SYSTEM))
    await world.settle()
    return case_id


async def run_cases(world: World, count: int, concurrency: int = 6, first: int = 0) -> None:
    """`count` notifications, `concurrency` of them in flight at a time, as a busy month has them."""
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            await run_case(world, n)

    await asyncio.gather(*(one(n) for n in range(first, first + count)))
    await governance.flag_overdue_actions(world.store("governance"), date.today(), Context(GOVERNANCE))
    await world.settle()


async def case_event_count(world: World, case_id: UUID) -> int:
    total = 0
    for s in world.services.values():
        total += len(await s.store.read_case(case_id))
    return total


async def long_case(world: World, n: int, events: int) -> UUID:
    """A case with exactly `events` events across the services, closed by the QA panel: a long review
    with many notes. A completed review takes nothing more, so the last notes are written while it
    waits for QA a second time: approved, reopened and resubmitted first, so that what the approval
    after them adds across the services is known (the first approval's count)."""
    plan = Plan(notes=events - 200 if events > 250 else 0, lapse=True, pause=True)
    case_id = await run_case(world, n, plan, qa=False)
    assert case_id is not None
    rng = random.Random(world.seed * 1_000_003 + n + 1)
    submitted = await case_event_count(world, case_id)
    await _qa(world, rng, case_id, approve=True)
    approval = await case_event_count(world, case_id) - submitted
    await _reopen(world, case_id)
    await world.settle()
    current = await _load_review(world, case_id)
    await _submit(world, case_id, current.reviewer_user_id)
    missing = events - approval - await case_event_count(world, case_id)
    if missing < 0:
        raise ValueError(f"the case already has {events - missing} events, more than {events}")
    sealed = await _sealer(world, case_id)
    for start in range(0, missing, 50):
        notes = [
            NoteAdded(case_id=case_id, text=sealed(f"Late note {i}: the family sent photographs."))
            for i in range(start, min(start + 50, missing))
        ]
        await _record(world, case_id, current.reviewer_user_id, notes)
    await _qa(world, rng, case_id, approve=True)
    await world.settle()
    assert await case_event_count(world, case_id) == events
    return case_id
