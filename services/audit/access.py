"""The access log: which entries of the audit log are a person's read of a case, and what each read was.

A read is an event of a known read type, or any event on a case's reads stream (`reads-<case_id>`):
every service records a person's read of a case's content on that stream, apart from the case's own,
so a read type a service adds later is in the access log without the audit service knowing it first.
Pure: no I/O."""

from dataclasses import dataclass

from events import Envelope
from services.audit.replay import describe_read

READS_STREAM_PREFIX = "reads-"
READ_EVENT_TYPES = (
    "notification.PersonalDetailsViewed",
    "notification.CaseRead",
    "review.ReviewRead",
    "governance.CaseRead",
    "audit.AuditLogRead",
)
# Written out (not bound as a parameter) so that the partial index of migration 005, whose predicate
# is this same text, serves the access log's pages.
IS_READ = (
    "(event_type IN ("
    + ", ".join(f"'{t}'" for t in READ_EVENT_TYPES)
    + f") OR stream_id LIKE '{READS_STREAM_PREFIX}%')"
)

# What each service's read shows, as `read` (a short code) and in words.
_KNOWN = {
    "notification.PersonalDetailsViewed": ("personal_details", "viewed personal details"),
    "notification.CaseRead": ("case", "read the case"),
    "review.ReviewRead": ("review", "read the review"),
}
_GOVERNANCE = {
    "action": "read an action agreed for the case",
}


@dataclass(frozen=True)
class Read:
    service: str
    read: str
    description: str


def _words(event_type: str) -> str:
    name = event_type.split(".", 1)[-1]
    return "".join(" " + c.lower() if c.isupper() else c for c in name).strip()


def describe(envelope: Envelope) -> Read:
    """What the read was, from which service, in words."""
    data = envelope.data
    what = data.get("what") if isinstance(data.get("what"), str) else None
    if envelope.event_type in _KNOWN:
        read, words = _KNOWN[envelope.event_type]
    elif envelope.event_type == "audit.AuditLogRead":
        read = str(what)
        words = describe_read(read)
        if data.get("as_of"):
            words = f"viewed the case as it stood at {data['as_of']}"
    elif envelope.event_type == "governance.CaseRead":
        read = what or "case"
        words = _GOVERNANCE.get(read, f"read the case's {read.replace('_', ' ')}")
    else:  # a read type this service does not know yet: its own name says what it was
        read = what or _words(envelope.event_type).replace(" ", "_")
        words = _words(envelope.event_type) if what is None else f"read the case's {what.replace('_', ' ')}"
    return Read(service=envelope.source, read=read, description=words)
