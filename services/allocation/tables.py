"""What the allocation service's commands read besides their streams: the service's own tables (a
reviewer's caseload, the cases a senior reviewer supports, who holds a case, a case the notification
service has not opened, the case's data key), in the command's transaction.

The handlers take them as a Tables, PostgreSQL's in the service, so that a test can run the handlers
on the in-memory event store with tables of its own."""

from typing import Protocol
from uuid import UUID

from infra.eventstore import Transaction
from services.allocation import domain, texts


class Tables(Protocol):
    async def caseload(self, conn: Transaction, reviewer_id: UUID) -> int:
        """The reviewer's active caseload, holding the reviewer's caseload lock to the transaction's
        end: allocations to one reviewer are serialised, so two cannot both take their last place."""
        ...

    async def supporting_others(self, conn: Transaction, senior_id: UUID, case_id: UUID) -> int:
        """The cases other than `case_id` that `senior_id` supports now, holding the senior
        reviewer's support lock, so two allocations cannot both take their last place of support."""
        ...

    async def lock_reviewer(self, conn: Transaction, reviewer_id: UUID) -> None:
        """Both the reviewer's locks: nothing is allocated to them meanwhile (their deactivation)."""
        ...

    async def held_by(self, conn: Transaction, reviewer_id: UUID) -> list[UUID]:
        """The cases allocated now to the reviewer, as reviewer or supporting senior, in id order."""
        ...

    async def reviewer_of(self, conn: Transaction, user_id: str) -> UUID | None:
        """The reviewer registered with this user id, if any."""
        ...

    async def not_open(self, conn: Transaction, case_id: UUID) -> domain.NotOpenStatus | None:
        """The case's state at the notification service if it has the case but has not opened it."""
        ...

    async def sealer(self, conn: Transaction, case_id: UUID) -> domain.Sealer:
        """Seals text under the case's key (made on first use; KeyDestroyed once destroyed)."""
        ...


class PostgresTables:
    """The service's tables in PostgreSQL, as its projections keep them."""

    async def caseload(self, conn: Transaction, reviewer_id: UUID) -> int:
        # With their deactivation too, so none is allocated to them as they are deactivated.
        await _lock_caseload(conn, reviewer_id)
        load: int | None = await conn.fetchval(
            "SELECT active_caseload FROM reviewers WHERE reviewer_id = $1", reviewer_id
        )
        return load or 0

    async def supporting_others(self, conn: Transaction, senior_id: UUID, case_id: UUID) -> int:
        await _lock_support(conn, senior_id)
        count: int = await conn.fetchval(
            "SELECT count(*) FROM allocation_cases WHERE status = 'allocated' AND senior_reviewer_id = $1"
            " AND case_id <> $2",
            senior_id,
            case_id,
        )
        return count

    async def lock_reviewer(self, conn: Transaction, reviewer_id: UUID) -> None:
        await _lock_caseload(conn, reviewer_id)
        await _lock_support(conn, reviewer_id)

    async def held_by(self, conn: Transaction, reviewer_id: UUID) -> list[UUID]:
        rows = await conn.fetch(
            "SELECT case_id FROM allocation_cases WHERE status = 'allocated'"
            " AND (reviewer_id = $1 OR senior_reviewer_id = $1) ORDER BY case_id",
            reviewer_id,
        )
        return [row["case_id"] for row in rows]

    async def reviewer_of(self, conn: Transaction, user_id: str) -> UUID | None:
        found: UUID | None = await conn.fetchval(
            "SELECT reviewer_id FROM reviewers WHERE user_id = $1", user_id
        )
        return found

    async def not_open(self, conn: Transaction, case_id: UUID) -> domain.NotOpenStatus | None:
        status: domain.NotOpenStatus | None = await conn.fetchval(
            "SELECT status FROM cases_not_open WHERE case_id = $1", case_id
        )
        return status

    async def sealer(self, conn: Transaction, case_id: UUID) -> domain.Sealer:
        return await texts.sealer(conn, case_id)


async def _lock_caseload(conn: Transaction, reviewer_id: UUID) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"caseload-{reviewer_id}")


async def _lock_support(conn: Transaction, senior_id: UUID) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"supporting-{senior_id}")


POSTGRES: Tables = PostgresTables()
