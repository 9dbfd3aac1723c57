"""The log's order, published beside its checkpoints (issue 20: the audit database restored from a backup).

The log holds every service's events in the order they arrived, and a signed checkpoint commits to that
order; the events' bytes are on the services' topics, but the order is in the audit database alone. So
each checkpoint, before its note is published, appends to the order log (the checkpoint log's path with
`.order` added, outside the database like it) one line per entry since the previous checkpoint:
position, source, source sequence, event id and the SHA-256 of its bytes. `leder recover audit` logs the
entries a restore lost in that order (services/audit/rebuild.py) and checks the tree against the
checkpoints; a line changed or lost shows as a tree that does not match them. Only signed entries are
listed: the order of those after the last checkpoint was committed to nothing, and is not kept."""

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from infra.db import Connection


@dataclass(frozen=True)
class OrderedEntry:
    """One entry of the log: where it is, and which event's bytes it holds."""

    position: int
    source: str
    source_sequence: int
    event_id: UUID
    sha256: str

    def line(self) -> str:
        return json.dumps(
            {
                "position": self.position,
                "source": self.source,
                "source_sequence": self.source_sequence,
                "event_id": str(self.event_id),
                "sha256": self.sha256,
            },
            separators=(",", ":"),
        )


class OrderUnreadable(ValueError):
    """The order log holds a line that is no entry, or two entries at one position."""


def order_log(checkpoint_log: Path) -> Path:
    return checkpoint_log.with_name(checkpoint_log.name + ".order")


async def publish(conn: Connection, checkpoint_log: Path, tree_size: int) -> None:
    """Append the entries after the previous checkpoint up to `tree_size` (in the checkpoint's
    transaction, the append lock held), on disk before the checkpoint is."""
    since: int = await conn.fetchval("SELECT coalesce(max(tree_size), 0) FROM checkpoints")
    if since >= tree_size:
        return
    rows = await conn.fetch(
        "SELECT position, source, source_sequence, event_id, content_hash FROM audit_log"
        " WHERE position >= $1 AND position < $2 ORDER BY position",
        since,
        tree_size,
    )
    text = "".join(
        OrderedEntry(
            r["position"], r["source"], r["source_sequence"], r["event_id"], bytes(r["content_hash"]).hex()
        ).line()
        + "\n"
        for r in rows
    )
    await asyncio.to_thread(_append, order_log(checkpoint_log), text)


def _append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read(checkpoint_log: Path) -> dict[int, OrderedEntry]:
    """Each position's entry as the order log has it (a range written twice, by a checkpoint whose
    transaction did not commit and the next, is the same entries twice); OrderUnreadable otherwise."""
    path = order_log(checkpoint_log)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out: dict[int, OrderedEntry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            entry = OrderedEntry(
                int(fields["position"]),
                str(fields["source"]),
                int(fields["source_sequence"]),
                UUID(fields["event_id"]),
                str(fields["sha256"]),
            )
        except (ValueError, KeyError, TypeError) as bad:
            raise OrderUnreadable(f"{path}, line {number}: not an entry ({bad})") from bad
        if out.setdefault(entry.position, entry) != entry:
            raise OrderUnreadable(f"{path}, line {number}: another entry at position {entry.position}")
    return out
