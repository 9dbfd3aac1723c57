"""A case's export: every event of the case as JSON Lines with an inclusion proof per event, the same
as CSV for people, and the signed checkpoint the proofs lead to. `leder audit export` writes the files;
`GET /audit/cases/{id}/export` serves them as one zip. Both are made here."""

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from events import Envelope
from infra.csvcells import csv_text
from infra.db import Connection
from services.audit import log, merkle, store
from services.audit.replay import summary

CSV_HEADER = ["position", "occurred_at", "who", "role", "event_type", "summary", "event_id"]


@dataclass(frozen=True)
class Export:
    case_id: UUID
    reference: str | None
    files: dict[str, bytes]  # file name to contents

    @property
    def name(self) -> str:
        """What the case is called in file names: its reference, or its id before references."""
        return self.reference or str(self.case_id)


async def gather(
    conn: Connection, case_id: UUID
) -> tuple[
    list[tuple[int, Envelope]],
    log.Checkpoint,
    list[bytes],
    Mapping[str, str],
    Mapping[int, log.EventSignature],
]:
    """What an export is made of: the case's entries, a signed checkpoint covering every one of them
    (signed now if the latest does not), the leaf hashes up to it, people's names, and the signature
    each entry arrived with from the service that published it."""
    entries = await store.case_entries(conn, case_id)
    checkpoint = await log.latest_checkpoint(conn)
    last = max((position for position, _ in entries), default=-1)
    if checkpoint is None or checkpoint.tree_size <= last:
        checkpoint = await log.sign_checkpoint(conn)
    hashes = await log.leaf_hashes(conn, checkpoint.tree_size)
    names = await store.names(conn, {e.actor.id for _, e in entries})
    signatures = await store.signatures(conn, (position for position, _ in entries))
    return entries, checkpoint, hashes, names, signatures


def build(
    case_id: UUID,
    entries: list[tuple[int, Envelope]],
    checkpoint: log.Checkpoint,
    hashes: list[bytes],
    names: Mapping[str, str] | None = None,
    signatures: Mapping[int, log.EventSignature] | None = None,
) -> Export:
    """The export's files (CPU bound for a large log: the tree is built once, each proof a walk up).
    Each JSON line carries, with its proof, the publishing service's signature of the envelope (over
    `leder-event-v1\\n`, the topic, `\\n` and the envelope's bytes), which a verifier checks with that
    service's pinned public key (infra/signing.py)."""
    tree = merkle.levels(hashes) if hashes else []
    jsonl = io.StringIO()
    table: list[list[object]] = [list(CSV_HEADER)]
    reference = None
    for position, e in entries:
        if e.event_type == "notification.CaseOpened":
            reference = e.data.get("reference") or reference
        record: dict[str, Any] = {"position": position, "envelope": e.canonical().decode()}
        if position < checkpoint.tree_size:
            record |= {
                "leaf_index": position,
                "tree_size": checkpoint.tree_size,
                "leaf_hash": hashes[position].hex(),
                "root_hash": checkpoint.root_hash.hex(),
                "proof": [h.hex() for h in merkle.path(position, tree)],
            }
        if signatures and (signed := signatures.get(position)) is not None:
            record["event_signature"] = {
                "algorithm": "Ed25519",
                "signature": signed.signature,
                "key_id": signed.key_id,
                "topic": signed.topic,
            }
        jsonl.write(json.dumps(record) + "\n")
        row = [position, e.occurred_at.isoformat(), e.actor.id, e.actor.role, e.event_type]
        table.append([*row, summary(e, names), e.event_id])
    checkpoint_json = json.dumps(checkpoint.as_json(), indent=2)
    return Export(
        case_id,
        reference,
        {
            f"{case_id}.jsonl": jsonl.getvalue().encode(),
            f"{case_id}.csv": csv_text(table).encode(),
            f"{case_id}.checkpoint.json": checkpoint_json.encode(),
        },
    )


def zipped(export: Export) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, contents in export.files.items():
            archive.writestr(name, contents)
    return out.getvalue()
