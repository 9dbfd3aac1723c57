"""Events of the audit service: who read the audit log, and notifications that were rejected."""

from datetime import datetime
from uuid import UUID

from pydantic import Field

from events.registry import EventPayload, event


@event("audit.AuditLogRead")
class AuditLogRead(EventPayload):
    """Every read of the audit log is itself in the log."""

    reader: str
    role: str
    what: str
    case_id: UUID | None = None
    as_of: datetime | None = None
    reason: str | None = Field(
        default=None, max_length=500, description="why, where the reader gave a reason (an export's)"
    )


@event("audit.RejectedNotificationRecorded")
class RejectedNotificationRecorded(EventPayload):
    """A partner notification that went to the DLQ: accounted for, by hash (its bytes may hold personal
    data, so they stay in the DLQ), with the reasons."""

    topic: str
    partition: int
    offset: int
    sha256: str
    reasons: str


@event("audit.LogHighWaterMarked")
class LogHighWaterMarked(EventPayload):
    """How far the audit log has logged each service's events, published whenever it moves (and daily):
    a service whose store was restored from a backup finds here that it lost events the rest of the
    system saw, even when its own topic no longer holds them (infra.fencing)."""

    highest: dict[str, int] = Field(
        description="per service (the envelope's source), the highest source_sequence the log holds"
    )
    log_size: int = Field(ge=0, description="entries in the log when the marks were read")
