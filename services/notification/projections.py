"""Read models of the notification service, kept from its own events (see `leder rebuild`)."""

import json
from collections.abc import Sequence

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
from infra.db import Connection
from services.notification.domain import ETHNICITY_NOT_STATED, FLAG_ETHNICITY_NOT_STATED, reference_parts
from services.notification.personal import keys, unseal_with_stored_key


class CasesProjection:
    """`cases` (the LAC's list), `notifications` (each notification's first outcome) and
    `case_references` (the last reference number given in each year)."""

    name = "cases"
    tables: Sequence[str] = ("cases", "notifications", "case_references")

    async def apply(self, conn: Connection, envelope: Envelope) -> None:
        event = envelope.payload()
        at = envelope.occurred_at
        match event:
            case CaseOpened() | EligibilityToConfirm():
                status = "open" if isinstance(event, CaseOpened) else "eligibility_to_confirm"
                review_type = event.review_type if isinstance(event, CaseOpened) else None
                unknown = event.unknown if isinstance(event, EligibilityToConfirm) else []
                reference = event.reference if isinstance(event, CaseOpened) else None
                notifier = {
                    "organisation": event.facts.notifier_organisation,
                    "role": event.facts.notifier_role,
                    "notification_id": str(event.notification_id),
                }
                await conn.execute(
                    """
                    INSERT INTO cases (case_id, status, review_type, focused_reasons, flags,
                                       unknown_diagnoses, notified_at, facts, notifiers, updated_at,
                                       reference)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $7, $10)
                    ON CONFLICT (case_id) DO UPDATE SET status = $2, review_type = $3, focused_reasons = $4,
                        flags = $5, unknown_diagnoses = $6, facts = $8, updated_at = $7,
                        reference = coalesce($10, cases.reference)
                    """,
                    event.case_id,
                    status,
                    review_type,
                    event.focused_reasons,
                    event.flags,
                    unknown,
                    at,
                    event.facts.model_dump_json(),
                    json.dumps([notifier]),
                    reference,
                )
                if reference is not None:
                    year, number = reference_parts(reference)
                    await conn.execute(
                        "INSERT INTO case_references (year, last_number) VALUES ($1, $2) ON CONFLICT (year)"
                        " DO UPDATE SET last_number = greatest(case_references.last_number, $2)",
                        year,
                        number,
                    )
                await self._first_outcome(
                    conn, event.notification_id, status_outcome(status), event.case_id, at,
                    event.facts.notifier_organisation, event.content_hash,
                )  # fmt: skip
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


def status_outcome(status: str) -> str:
    return "case_opened" if status == "open" else "eligibility_to_confirm"


class PersonIndex:
    """Who each case is about, normalised for matching the same person notified again, and kept only
    as keyed hashes (`match_value`): a dump of the table names no one."""

    name = "person_index"
    tables: Sequence[str] = ("person_index",)

    async def apply(self, conn: Connection, envelope: Envelope) -> None:
        event = envelope.payload()
        match event:
            case CaseOpened() | EligibilityToConfirm() | DuplicateNotificationLinked():
                details = await unseal_with_stored_key(conn, event.personal)
                if details is None:
                    return  # destroyed: nothing to match on any more
                keys = []
                if details.nhs_number:
                    keys.append(("nhs_number", details.nhs_number))
                if not isinstance(event, DuplicateNotificationLinked):
                    keys.append(
                        (
                            "name_and_dates",
                            name_and_dates(
                                details.family_name,
                                str(details.date_of_birth),
                                str(event.facts.date_of_death),
                            ),
                        )
                    )
                for kind, value in keys:
                    await conn.execute(
                        "INSERT INTO person_index (case_id, match_kind, match_value) VALUES ($1, $2, $3)"
                        " ON CONFLICT DO NOTHING",
                        event.case_id,
                        kind,
                        await match_value(kind, value),
                    )
            case PersonalDataDestroyed() | EligibilityRejected():
                await conn.execute("DELETE FROM person_index WHERE case_id = $1", event.case_id)


def name_and_dates(family_name: str, date_of_birth: str, date_of_death: str) -> str:
    return f"{normalise_name(family_name)}|{date_of_birth}|{date_of_death}"


async def match_value(kind: str, value: str) -> str:
    """What person_index holds for a normalised identifying value: its HMAC under the service's
    person-index key, which lives in the key manager (never in the database) and is never destroyed,
    so the same person gives the same value for as long as the index is kept."""
    return await keys().hmac("person-index", f"{kind}:{value}")


def projections() -> list[CasesProjection | PersonIndex]:
    return [CasesProjection(), PersonIndex()]
