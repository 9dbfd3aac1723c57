"""Read models of the notification service, kept from its own events (see `leder rebuild`)."""

import json
from collections.abc import Callable, Sequence
from datetime import date
from operator import itemgetter
from typing import Any, cast
from uuid import UUID

from cryptography.exceptions import InvalidTag

from events import Envelope
from events.notification import (
    CaseAllocationEnded,
    CaseAllocationRecorded,
    CaseClosureRecorded,
    CaseEscalatedToFocused,
    CaseOpened,
    CaseReopeningRecorded,
    DuplicateNotificationLinked,
    EligibilityRejected,
    EligibilityToConfirm,
    EthnicityRecorded,
    NotificationNotEligible,
    NotificationPersonalDataDestroyed,
    PersonalDataDestroyed,
    ReferredToChildDeathOverviewPanel,
)
from events.partner import normalise_name
from infra import sealing
from infra.db import Connection
from infra.projections import (
    Decoded,
    Row,
    add_missing,
    copy_records,
    copy_rows,
    fields_parser,
    json_text,
    reads,
)
from services.notification.domain import ETHNICITY_NOT_STATED, FLAG_ETHNICITY_NOT_STATED, reference_parts
from services.notification.personal import PersonalDetails, keys, unseal, unseal_with_stored_key

# The events that name a person, to be indexed.
Person = CaseOpened | EligibilityToConfirm | DuplicateNotificationLinked

PERSON_INDEX = "person-index"  # the purpose of the key the index's values are hashed under


class CasesProjection:
    """`cases` (the LAC's list), `notifications` (each notification's first outcome) and
    `case_references` (the last reference number given in each year)."""

    name = "cases"
    tables: Sequence[str] = ("cases", "notifications", "case_references")
    event_types = reads(
        CaseOpened, EligibilityToConfirm, DuplicateNotificationLinked, ReferredToChildDeathOverviewPanel,
        NotificationNotEligible, EligibilityRejected, EthnicityRecorded, CaseEscalatedToFocused,
        CaseAllocationRecorded, CaseAllocationEnded, PersonalDataDestroyed, NotificationPersonalDataDestroyed,
        CaseClosureRecorded, CaseReopeningRecorded,
    )  # fmt: skip

    async def apply(self, conn: Connection, envelope: Envelope) -> None:
        event = envelope.payload()
        at = envelope.occurred_at
        match event:
            case CaseOpened() | EligibilityToConfirm():
                # One statement for the three tables (each its own part), one round trip: intake's cost.
                await conn.execute(_OPENED, *_opened_args(event, at))
            case DuplicateNotificationLinked():
                notifier = {
                    "organisation": event.notifier_organisation,
                    "role": event.notifier_role,
                    "notification_id": str(event.notification_id),
                }
                await conn.execute(
                    "UPDATE cases SET notifiers = notifiers || $2::jsonb, updated_at = $3 WHERE case_id = $1",
                    event.case_id,
                    json.dumps([notifier]),
                    at,
                )
                await self._first_outcome(
                    conn, event.notification_id, "duplicate_linked", event.case_id, at,
                    event.notifier_organisation, event.content_hash,
                )  # fmt: skip
            case ReferredToChildDeathOverviewPanel() | NotificationNotEligible():
                cdop = isinstance(event, ReferredToChildDeathOverviewPanel)
                outcome = "referred_to_cdop" if cdop else "not_eligible"
                await self._first_outcome(
                    conn, event.notification_id, outcome, None, at,
                    event.facts.notifier_organisation, event.content_hash,
                )  # fmt: skip
            case EligibilityRejected():
                await self._set(conn, event.case_id, at, "status = 'not_eligible'")
            case EthnicityRecorded():
                flags_sql = "array_remove(flags, $3)" + (
                    " || ARRAY[$3]" if event.ethnicity in ETHNICITY_NOT_STATED else ""
                )
                await conn.execute(
                    f"UPDATE cases SET facts = jsonb_set(facts, '{{ethnicity}}', to_jsonb($4::text)),"
                    f" flags = {flags_sql}, updated_at = $2 WHERE case_id = $1",
                    event.case_id,
                    at,
                    FLAG_ETHNICITY_NOT_STATED,
                    event.ethnicity,
                )
            case CaseEscalatedToFocused():
                await conn.execute(
                    "UPDATE cases SET review_type = 'focused', updated_at = $2, focused_reasons ="
                    " focused_reasons || ARRAY(SELECT r FROM unnest($3::text[]) WITH ORDINALITY AS n(r, i)"
                    " WHERE r <> ALL(focused_reasons) ORDER BY i) WHERE case_id = $1",
                    event.case_id,
                    at,
                    event.reasons,
                )
            case CaseAllocationRecorded():
                await conn.execute(
                    "UPDATE cases SET reviewer_user_id = $3, senior_reviewer_user_id = $4, updated_at = $2,"
                    " allocation_ended = NULL WHERE case_id = $1",
                    event.case_id,
                    at,
                    event.reviewer_user_id,
                    event.senior_reviewer_user_id,
                )
            case CaseAllocationEnded() if event.reason in ("conflict_declared", "returned_to_queue"):
                # Back in the queue: nobody has the case.
                await conn.execute(
                    "UPDATE cases SET reviewer_user_id = NULL, senior_reviewer_user_id = NULL,"
                    " allocation_ended = $3, updated_at = $2 WHERE case_id = $1",
                    event.case_id,
                    at,
                    event.reason,
                )
            case CaseAllocationEnded():
                await conn.execute(
                    "UPDATE cases SET allocation_ended = $3, updated_at = $2 WHERE case_id = $1",
                    event.case_id,
                    at,
                    event.reason,
                )
            case PersonalDataDestroyed():
                await self._set(conn, event.case_id, at, "personal_destroyed = true")
            case NotificationPersonalDataDestroyed():
                await conn.execute(
                    "UPDATE notifications SET personal_destroyed = true WHERE notification_id = $1",
                    event.notification_id,
                )
            case CaseClosureRecorded():
                await self._set(conn, event.case_id, at, "status = 'closed'")
            case CaseReopeningRecorded():
                await self._set(conn, event.case_id, at, "status = 'open'")

    async def apply_many(self, conn: Connection, envelopes: Sequence[Envelope]) -> None:
        """`apply` of each in turn, but the cases each run of them opens one after the other written
        in one round trip (a batch of intakes opens many)."""
        opened: list[tuple[Any, ...]] = []
        for envelope in envelopes:
            event = envelope.payload()
            if isinstance(event, CaseOpened | EligibilityToConfirm):
                opened.append(_opened_args(event, envelope.occurred_at))
                continue
            if opened:
                await conn.executemany(_OPENED, opened)
                opened = []
            await self.apply(conn, envelope)
        if opened:
            await conn.executemany(_OPENED, opened)

    def fold(self) -> "CasesFold":
        return CasesFold()

    @staticmethod
    async def _set(conn: Connection, case_id: object, at: object, assignment: str) -> None:
        await conn.execute(f"UPDATE cases SET {assignment}, updated_at = $2 WHERE case_id = $1", case_id, at)

    @staticmethod
    async def _first_outcome(
        conn: Connection,
        notification_id: object,
        outcome: str,
        case_id: object,
        at: object,
        organisation: str,
        content_hash: str | None,
    ) -> None:
        await conn.execute(
            "INSERT INTO notifications (notification_id, outcome, case_id, received_at, organisation,"
            " content_hash) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (notification_id) DO NOTHING",
            notification_id,
            outcome,
            case_id,
            at,
            organisation,
            content_hash,
        )


# A case opened (or waiting for its eligibility to be confirmed): its row, its year's last reference
# number, and the notification's first outcome.
_OPENED = """
    WITH opened AS (
        INSERT INTO cases (case_id, status, review_type, focused_reasons, flags, unknown_diagnoses,
                           notified_at, facts, notifiers, updated_at, reference)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $7, $10)
        ON CONFLICT (case_id) DO UPDATE SET status = $2, review_type = $3,
            focused_reasons = $4, flags = $5, unknown_diagnoses = $6, facts = $8,
            updated_at = $7, reference = coalesce($10, cases.reference)
    ), numbered AS (
        INSERT INTO case_references (year, last_number)
        SELECT $11::int, $12::int WHERE $11::int IS NOT NULL
        ON CONFLICT (year) DO UPDATE
            SET last_number = greatest(case_references.last_number, excluded.last_number)
    )
    INSERT INTO notifications (notification_id, outcome, case_id, received_at, organisation, content_hash)
    VALUES ($13, $14, $1, $7, $15, $16) ON CONFLICT (notification_id) DO NOTHING
"""


def _opened_args(event: CaseOpened | EligibilityToConfirm, at: Any) -> tuple[Any, ...]:
    """`_OPENED`'s parameters for `event`, which occurred `at`."""
    opened = isinstance(event, CaseOpened)
    status = "open" if opened else "eligibility_to_confirm"
    reference = event.reference if isinstance(event, CaseOpened) else None
    notifier = {
        "organisation": event.facts.notifier_organisation,
        "role": event.facts.notifier_role,
        "notification_id": str(event.notification_id),
    }
    year, number = reference_parts(reference) if reference is not None else (None, None)
    return (
        event.case_id,
        status,
        event.review_type if isinstance(event, CaseOpened) else None,
        event.focused_reasons,
        event.flags,
        event.unknown if isinstance(event, EligibilityToConfirm) else [],
        at,
        event.facts.model_dump_json(),
        json.dumps([notifier]),
        reference,
        year,
        number,
        event.notification_id,
        status_outcome(status),
        event.facts.notifier_organisation,
        event.content_hash,
    )


class CasesFold:
    """The same rows as `CasesProjection.apply`, built in memory for a rebuild (infra.projections).
    Each event goes to its type's function (`_CASE_UPDATES`, `_NOTIFICATION_EVENTS`) in one dictionary
    look-up, where a `match` on class patterns tries the types one after the other: a rebuild folds
    tens of thousands."""

    def __init__(self) -> None:
        self.cases: dict[UUID, Row] = {}
        self.notifications: dict[UUID, Row] = {}
        self.references: dict[int, int] = {}

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        cases = self.cases
        for envelope, event in events:
            kind = type(event)
            update = _CASE_UPDATES.get(kind)
            if update is not None:
                case = cases.get(event.case_id)  # type: ignore[attr-defined]
                if case is not None:  # else an UPDATE of no row
                    update(case, event)
                    case["updated_at"] = envelope.occurred_at
                continue
            handler = _NOTIFICATION_EVENTS.get(kind)
            if handler is not None:
                handler(self, envelope.occurred_at, event)

    async def write(self, conn: Connection) -> None:
        dumps = json.dumps
        await copy_records(
            conn,
            "cases",
            (*_CASE_COLUMNS, "facts", "notifiers"),
            [
                (
                    *_case_columns(c),
                    c["facts"] if isinstance(c["facts"], str) else dumps(c["facts"]),
                    json_text(c["notifiers"]),
                )
                for c in self.cases.values()
            ],
        )
        await copy_rows(conn, "notifications", self.notifications.values())
        await copy_rows(
            conn, "case_references", ({"year": y, "last_number": n} for y, n in self.references.items())
        )

    def _first_outcome(
        self, notification_id: UUID, outcome: str, case_id: UUID | None, at: object, organisation: str,
        content_hash: str | None,
    ) -> None:  # fmt: skip
        if notification_id not in self.notifications:
            self.notifications[notification_id] = {
                "notification_id": notification_id,
                "outcome": outcome,
                "case_id": case_id,
                "received_at": at,
                "organisation": organisation,
                "content_hash": content_hash,
                "personal_destroyed": False,
            }

    # Each type's own function, as `isinstance` on a pydantic model class goes through its metaclass's
    # `__instancecheck__` in Python.
    def _opened(self, at: Any, event: CaseOpened) -> None:
        self._open(at, event, "open", event.review_type, [], event.reference)

    def _to_confirm(self, at: Any, event: EligibilityToConfirm) -> None:
        self._open(at, event, "eligibility_to_confirm", None, list(event.unknown), None)

    def _open(
        self, at: Any, event: CaseOpened | EligibilityToConfirm, status: str, review_type: str | None,
        unknown: list[str], reference: str | None,
    ) -> None:  # fmt: skip
        facts = event.facts
        changes = {
            "status": status,
            "review_type": review_type,
            "focused_reasons": list(event.focused_reasons),
            "flags": list(event.flags),
            "unknown_diagnoses": unknown,
            "facts": facts.model_dump_json(),
            "updated_at": at,
        }
        notifier = {
            "organisation": facts.notifier_organisation,
            "role": facts.notifier_role,
            "notification_id": str(event.notification_id),
        }
        case = self.cases.get(event.case_id)
        if case is None:
            self.cases[event.case_id] = {
                "case_id": event.case_id,
                **changes,
                "notified_at": at,
                "notifiers": [notifier],
                "reviewer_user_id": None,
                "senior_reviewer_user_id": None,
                "personal_destroyed": False,
                "reference": reference,
                "allocation_ended": None,
            }
        else:
            case.update(changes)
            if reference is not None:
                case["reference"] = reference
        if reference is not None:
            year, number = reference_parts(reference)
            self.references[year] = max(self.references.get(year, number), number)
        self._first_outcome(
            event.notification_id, status_outcome(status), event.case_id, at, facts.notifier_organisation,
            event.content_hash,
        )  # fmt: skip

    def _linked(self, at: Any, event: DuplicateNotificationLinked) -> None:
        case = self.cases.get(event.case_id)
        if case is not None:
            case["notifiers"].append(
                {
                    "organisation": event.notifier_organisation,
                    "role": event.notifier_role,
                    "notification_id": str(event.notification_id),
                }
            )
            case["updated_at"] = at
        self._first_outcome(
            event.notification_id, "duplicate_linked", event.case_id, at, event.notifier_organisation,
            event.content_hash,
        )  # fmt: skip

    def _referred(self, at: Any, event: ReferredToChildDeathOverviewPanel) -> None:
        self._first_outcome(
            event.notification_id, "referred_to_cdop", None, at, event.facts.notifier_organisation,
            event.content_hash,
        )  # fmt: skip

    def _not_eligible(self, at: Any, event: NotificationNotEligible) -> None:
        self._first_outcome(
            event.notification_id, "not_eligible", None, at, event.facts.notifier_organisation,
            event.content_hash,
        )  # fmt: skip

    def _notification_destroyed(self, at: Any, event: NotificationPersonalDataDestroyed) -> None:
        notification = self.notifications.get(event.notification_id)
        if notification is not None:
            notification["personal_destroyed"] = True


# The events about a notification (that may add a case), and those that update a case. Functions, not
# bound methods in each fold, which would make it a cycle that only the collector frees.
_NOTIFICATION_EVENTS: dict[type, Callable[[CasesFold, Any, Any], None]] = {
    CaseOpened: CasesFold._opened,
    EligibilityToConfirm: CasesFold._to_confirm,
    DuplicateNotificationLinked: CasesFold._linked,
    ReferredToChildDeathOverviewPanel: CasesFold._referred,
    NotificationNotEligible: CasesFold._not_eligible,
    NotificationPersonalDataDestroyed: CasesFold._notification_destroyed,
}

# A case's columns but its two JSON ones (facts, notifiers), as a tuple in one call.
_CASE_COLUMNS = (
    "case_id", "status", "review_type", "focused_reasons", "flags", "unknown_diagnoses", "updated_at",
    "notified_at", "reviewer_user_id", "senior_reviewer_user_id", "personal_destroyed", "reference",
    "allocation_ended",
)  # fmt: skip
_case_columns = itemgetter(*_CASE_COLUMNS)


# What each event that updates a case does to its row in `CasesFold` (updated_at set by the caller).


def _rejected(case: Row, event: EligibilityRejected) -> None:
    case["status"] = "not_eligible"


def _ethnicity(case: Row, event: EthnicityRecorded) -> None:
    facts = case["facts"]
    facts = json.loads(facts) if isinstance(facts, str) else facts
    facts["ethnicity"] = event.ethnicity
    flags = [f for f in case["flags"] if f != FLAG_ETHNICITY_NOT_STATED]
    if event.ethnicity in ETHNICITY_NOT_STATED:
        flags.append(FLAG_ETHNICITY_NOT_STATED)
    case.update(facts=facts, flags=flags)


def _escalated(case: Row, event: CaseEscalatedToFocused) -> None:
    case["review_type"] = "focused"
    case["focused_reasons"] = add_missing(case["focused_reasons"], event.reasons)


def _allocated(case: Row, event: CaseAllocationRecorded) -> None:
    case["reviewer_user_id"] = event.reviewer_user_id
    case["senior_reviewer_user_id"] = event.senior_reviewer_user_id
    case["allocation_ended"] = None


def _allocation_ended(case: Row, event: CaseAllocationEnded) -> None:
    if event.reason in ("conflict_declared", "returned_to_queue"):  # back in the queue: nobody has it
        case["reviewer_user_id"] = case["senior_reviewer_user_id"] = None
    case["allocation_ended"] = event.reason


def _personal_destroyed(case: Row, event: PersonalDataDestroyed) -> None:
    case["personal_destroyed"] = True


def _closed(case: Row, event: CaseClosureRecorded) -> None:
    case["status"] = "closed"


def _reopened(case: Row, event: CaseReopeningRecorded) -> None:
    case["status"] = "open"


_CASE_UPDATES: dict[type, Callable[[Row, Any], None]] = {
    EligibilityRejected: _rejected,
    EthnicityRecorded: _ethnicity,
    CaseEscalatedToFocused: _escalated,
    CaseAllocationRecorded: _allocated,
    CaseAllocationEnded: _allocation_ended,
    PersonalDataDestroyed: _personal_destroyed,
    CaseClosureRecorded: _closed,
    CaseReopeningRecorded: _reopened,
}


def status_outcome(status: str) -> str:
    return "case_opened" if status == "open" else "eligibility_to_confirm"


class PersonIndex:
    """Who each case is about, normalised for matching the same person notified again, and kept only
    as keyed hashes (`match_value`): a dump of the table names no one."""

    name = "person_index"
    tables: Sequence[str] = ("person_index",)
    event_types = reads(
        CaseOpened,
        EligibilityToConfirm,
        DuplicateNotificationLinked,
        PersonalDataDestroyed,
        EligibilityRejected,
    )

    async def apply(self, conn: Connection, envelope: Envelope) -> None:
        event = envelope.payload()
        match event:
            case CaseOpened() | EligibilityToConfirm() | DuplicateNotificationLinked():
                if await _index_under_cached_key(conn, event):
                    return
                details = await unseal_with_stored_key(conn, event.personal)
                if details is None:
                    return  # destroyed: nothing to match on any more
                found = _match_keys(event, details)
                await conn.execute(_INDEX, event.case_id, [k for k, _ in found], await match_values(found))
            case PersonalDataDestroyed() | EligibilityRejected():
                await conn.execute("DELETE FROM person_index WHERE case_id = $1", event.case_id)

    async def apply_many(self, conn: Connection, envelopes: Sequence[Envelope]) -> None:
        """`apply` of each in turn, but each run of people indexed under the data keys this process
        holds (a batch of intakes has just made them) written in one statement, which checks each key
        is still its case's: those it was not are applied one by one, as `apply` does."""
        run: list[Envelope] = []
        for envelope in envelopes:
            if envelope.event_type in _PEOPLE_TYPES:
                run.append(envelope)
                continue
            await self._index_run(conn, run)
            run = []
            await self.apply(conn, envelope)
        await self._index_run(conn, run)

    async def _index_run(self, conn: Connection, run: Sequence[Envelope]) -> None:
        # Inserts only (each ignoring a row already there), so their order in the run does not matter.
        alone: list[Envelope] = []
        given: list[tuple[Any, str, str, bytes]] = []  # case, kind, key id, its wrapping held
        values: list[tuple[str, str]] = []
        cases: list[tuple[Envelope, Any]] = []  # those written together, with their case ids
        for envelope in run:
            event = cast(Person, envelope.payload())
            held = _under_cached_key(event)
            if held is None:
                alone.append(envelope)
                continue
            found, wrapped = held
            given += [(event.case_id, kind, event.personal.key_id, wrapped) for kind, _ in found]
            values += found
            if found:
                cases.append((envelope, event.case_id))
        if given:
            rows = await conn.fetch(
                _INDEX_MANY_IF_KEYS_LIVE, *map(list, zip(*given, strict=True)), await match_values(values)
            )
            live = {r["case_id"] for r in rows}
            alone += [envelope for envelope, case_id in cases if case_id not in live]
        for envelope in alone:
            await self.apply(conn, envelope)

    def fold(self) -> "PersonIndexFold":
        return PersonIndexFold()


_INDEX = """
    INSERT INTO person_index (case_id, match_kind, match_value)
    SELECT $1, kind, value FROM unnest($2::text[], $3::text[]) AS t(kind, value)
    ON CONFLICT DO NOTHING
"""
# As _INDEX, for many cases and only under their keys: each row ($1 its case, $2 its kind, $5 its
# value) written if its case's data key is still the one given ($3, $4); the cases whose keys were.
_INDEX_MANY_IF_KEYS_LIVE = """
    WITH live AS (
        SELECT t.case_id, t.kind, t.value
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::text[])
             AS t(case_id, kind, key_id, wrapped, value)
        JOIN data_keys d ON d.key_id = t.key_id AND d.wrapped = t.wrapped AND d.destroyed_at IS NULL
    ), indexed AS (
        INSERT INTO person_index (case_id, match_kind, match_value)
        SELECT case_id, kind, value FROM live
        ON CONFLICT DO NOTHING
    )
    SELECT DISTINCT case_id FROM live
"""


def _under_cached_key(event: Person) -> tuple[list[tuple[str, str]], bytes] | None:
    """What the person is indexed by, unsealed with the data key this process holds for the case (intake
    has just made it), and that key's wrapping (to check it is still the case's); None when no key is
    held, or the personal data is sealed under another (the stored key will say)."""
    cached = keys().cached(event.personal.key_id)
    if cached is None:
        return None
    wrapped, key = cached
    try:
        return _match_keys(event, unseal(key, event.personal)), wrapped
    except InvalidTag:
        return None


async def _index_under_cached_key(conn: Connection, event: Person) -> bool:
    """Index the person under the data key this process holds for the case, in one statement that
    checks the key is still the case's: False (nothing written) when no key is held, or the one held is
    not the case's any more (destroyed, rewrapped), for the caller to read it."""
    held = _under_cached_key(event)
    if held is None:
        return False
    found, wrapped = held
    if not found:
        return True  # nothing to index by
    rows = [(event.case_id, kind, event.personal.key_id, wrapped) for kind, _ in found]
    live = await conn.fetch(
        _INDEX_MANY_IF_KEYS_LIVE, *map(list, zip(*rows, strict=True)), await match_values(found)
    )
    return bool(live)


class PersonIndexFold:
    """The same rows as `PersonIndex.apply`, built in memory for a rebuild (infra.projections). A page's
    people are unsealed together: their data keys read in one statement and unwrapped in one call to
    the key manager (`unwrap_many`), their values hashed in another (`hmac_many`)."""

    def __init__(self) -> None:
        self.index: dict[UUID, dict[tuple[str, str], None]] = {}  # case -> its (kind, value), in order
        self._data_keys: dict[str, bytes | None] = {}
        self._values: dict[tuple[str, str], str] = {}

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        mine = [event for _, event in events if type(event) in _INDEXED]
        people: list[Person] = [e for e in mine if type(e) in _PEOPLE]  # type: ignore[misc]
        await self._load_keys(conn, {e.personal.key_id for e in people})
        data_keys = self._data_keys
        wanted = []
        for person in people:
            key = data_keys[person.personal.key_id]
            wanted.append(
                () if key is None else _keys_of(person, **_identity(sealing.unseal(key, person.personal)))
            )
        await self._hash({k for ks in wanted for k in ks})
        unsealed = iter(wanted)
        index = self.index
        for event in mine:
            if type(event) in _PEOPLE:
                found = next(unsealed)
                if found:
                    index.setdefault(event.case_id, {}).update(dict.fromkeys(found))  # type: ignore[attr-defined]
            else:  # destroyed, or not eligible: nothing to match on any more
                index.pop(event.case_id, None)  # type: ignore[attr-defined]

    async def write(self, conn: Connection) -> None:
        values = self._values
        records = [
            (kind_and_value[0], values[kind_and_value], case_id)
            for case_id, entries in self.index.items()
            for kind_and_value in entries
        ]
        # In the order of the table's key (match_kind, match_value: two words and hex digests, in the
        # same order in any collation): PostgreSQL then adds each row at the index's right end instead
        # of searching the index for it. Two stable sorts on strings take a third of one on tuples.
        records.sort(key=itemgetter(1))
        records.sort(key=itemgetter(0))
        await copy_records(conn, "person_index", ("match_kind", "match_value", "case_id"), records)

    async def _load_keys(self, conn: Connection, key_ids: set[str]) -> None:
        """As `unseal_with_stored_key` reads a key, for all the page's keys in one statement."""
        missing = sorted(key_ids - self._data_keys.keys())
        if not missing:
            return
        rows = await conn.fetch(
            "SELECT key_id, wrapped, destroyed_at FROM data_keys WHERE key_id = any($1::text[])", missing
        )
        found = {r["key_id"]: r for r in rows}
        data_keys = keys()
        live = [
            key_id
            for key_id in missing
            if (row := found.get(key_id)) is not None
            and row["wrapped"] is not None
            and row["destroyed_at"] is None
        ]
        opened = await data_keys.keys.unwrap_many([(data_keys.kek(k), found[k]["wrapped"]) for k in live])
        self._data_keys.update(dict.fromkeys(missing))  # no row, no wrapping, or destroyed: None
        self._data_keys.update(zip(live, opened, strict=True))

    async def _hash(self, wanted: set[tuple[str, str]]) -> None:
        values = self._values
        new = [
            k for k in wanted if k not in values
        ]  # `wanted - values.keys()` walks every value hashed so far
        if new:
            self._values.update(zip(new, await match_values(new), strict=True))


_PEOPLE: frozenset[type] = frozenset({CaseOpened, EligibilityToConfirm, DuplicateNotificationLinked})
_PEOPLE_TYPES = frozenset(
    t.event_type for t in (CaseOpened, EligibilityToConfirm, DuplicateNotificationLinked)
)
_INDEXED = _PEOPLE | {PersonalDataDestroyed, EligibilityRejected}  # PersonIndex.event_types

# What the index reads of a person's details (`PersonalDetails`), its three fields parsed as the model
# parses them: the rest of the sealed JSON (the next of kin's email checked by email-validator, the
# notifier...) is skipped, not validated, which is most of the model's time. The details were a
# `PersonalDetails` when they were sealed, and AES-GCM proves they are the bytes that were sealed.
_identity = fields_parser(PersonalDetails, "nhs_number", "family_name", "date_of_birth")


def _match_keys(
    event: CaseOpened | EligibilityToConfirm | DuplicateNotificationLinked, details: PersonalDetails
) -> list[tuple[str, str]]:
    """What `PersonIndex.apply` indexes a person by: (kind, normalised value) pairs, in its order."""
    return _keys_of(event, details.nhs_number, details.family_name, details.date_of_birth)


def _keys_of(
    event: Person, nhs_number: str | None, family_name: str, date_of_birth: date
) -> list[tuple[str, str]]:
    """`_match_keys` of the fields it reads (a rebuild parses only those)."""
    found = []
    if nhs_number:
        found.append(("nhs_number", nhs_number))
    if type(event) is DuplicateNotificationLinked:  # not isinstance: see CasesFold._opened
        return found
    date_of_death = cast(CaseOpened | EligibilityToConfirm, event).facts.date_of_death
    found.append(("name_and_dates", name_and_dates(family_name, str(date_of_birth), str(date_of_death))))
    return found


def name_and_dates(family_name: str, date_of_birth: str, date_of_death: str) -> str:
    # An ASCII name has nothing for NFKD to decompose and no combining marks to drop: normalise_name
    # gives its case-folded words, made here without walking it letter by letter (a rebuild makes one
    # for every person).
    name = " ".join(family_name.casefold().split()) if family_name.isascii() else normalise_name(family_name)
    return f"{name}|{date_of_birth}|{date_of_death}"


async def match_value(kind: str, value: str) -> str:
    """What person_index holds for a normalised identifying value: its HMAC under the service's
    person-index key, which lives in the key manager (never in the database) and is never destroyed,
    so the same person gives the same value for as long as the index is kept."""
    return await keys().hmac(PERSON_INDEX, f"{kind}:{value}")


async def match_values(kinds_and_values: Sequence[tuple[str, str]]) -> list[str]:
    """`match_value` of each, in one call to the key manager."""
    data_keys = keys()
    digests = await data_keys.keys.hmac_many(
        f"{data_keys.service}/{PERSON_INDEX}",
        [f"{kind}:{value}".encode() for kind, value in kinds_and_values],
    )
    return [d.hex() for d in digests]


def projections() -> list[CasesProjection | PersonIndex]:
    return [CasesProjection(), PersonIndex()]
