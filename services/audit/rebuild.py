"""Rebuilding an audit log restored from a backup (`leder recover audit`, issue 20).

The restored log lost the entries logged after the backup. Their bytes are on the services' topics (the
audit service's own events are put back into its store from its topic first, leder.recovery); their
order, which the checkpoints signed since commit to, is in the order log each checkpoint appends to
(services.audit.order). Every entry up to the last published checkpoint is logged again at its
position, its bytes taken from its source's topic (signature-checked) and checked against the hash the
order log holds; then the tree is checked against every published checkpoint, the last one included.
After them, the audit service's own lost events are logged in their sequence order.

The other services' events logged after the last checkpoint are not: nothing committed to their order.
`leder audit reconcile` logs them afterwards, as it fills any gap."""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from events import Envelope
from infra.db import Connection
from services.audit import log, merkle
from services.audit.order import OrderedEntry


class RebuildRefused(Exception):
    """The log cannot be rebuilt as it was: nothing is written."""


@dataclass(frozen=True)
class Found:
    """An event's canonical bytes as its source published them, with the signature they came with."""

    raw: bytes
    signed: log.EventSignature | None = None


@dataclass
class Rebuilt:
    held_before: int  # entries the restored log held
    by_source: dict[str, int] = field(default_factory=dict)  # entries logged again in order, per source
    checked: int | None = None  # tree size of the last published checkpoint, which the log matches
    own_after: int = 0  # the audit service's own lost events, logged after the last checkpoint's entries

    @property
    def entries(self) -> int:
        return sum(self.by_source.values())


def last_signed(trust: log.Trust | None) -> int:
    return max((p.tree_size for p in trust.published), default=0) if trust is not None else 0


def wanted(ordered: Mapping[int, OrderedEntry], held: int, signed: int) -> list[OrderedEntry]:
    """The entries from position `held` to the last checkpoint's size, in order; refused if the order
    log lacks one."""
    missing = [p for p in range(held, signed) if p not in ordered]
    if missing:
        raise RebuildRefused(
            f"the order log lacks the entry at position {missing[0]} ({len(missing)} of the"
            f" {signed - held} entries to the last published checkpoint): the log cannot be rebuilt in"
            " its order"
        )
    return [ordered[p] for p in range(held, signed)]


async def rebuild(
    conn: Connection,
    entries: Sequence[OrderedEntry],
    found: Mapping[UUID, Found],
    own_lost: Sequence[str],
    trust: log.Trust | None,
) -> Rebuilt:
    """Log `entries` again at their positions, each with the bytes `found` holds for its event id;
    check the tree against the checkpoints `trust` holds as published; then log `own_lost` (the audit
    service's own events put back, in sequence order) that the log does not hold yet."""
    rebuilt = Rebuilt(await log.log_size(conn))
    for entry in entries:
        where = f"entry {entry.position} ({entry.source} event {entry.source_sequence}, {entry.event_id})"
        got = found.get(entry.event_id)
        if got is None:
            raise RebuildRefused(f"the bytes of {where} are on no topic read: the log cannot be rebuilt")
        if hashlib.sha256(got.raw).hexdigest() != entry.sha256:
            raise RebuildRefused(f"the bytes of {where} on its topic are not the ones that were logged")
        envelope = Envelope.from_bytes(got.raw)
        if (envelope.source, envelope.source_sequence) != (entry.source, entry.source_sequence):
            raise RebuildRefused(f"{where}: its event is {envelope.source} {envelope.source_sequence}")
        if await log.log_size(conn) != entry.position or not await log.append(
            conn, got.raw, envelope, got.signed
        ):
            raise RebuildRefused(f"{where} could not be logged at its position (the log already holds it)")
        rebuilt.by_source[entry.source] = rebuilt.by_source.get(entry.source, 0) + 1
    if trust is not None and trust.published_problems:
        raise RebuildRefused("; ".join(trust.published_problems))
    published = sorted(trust.published, key=lambda p: p.tree_size) if trust is not None else []
    if published:
        hashes = await log.leaf_hashes(conn)
        for checkpoint in published:
            if checkpoint.tree_size > len(hashes):
                raise RebuildRefused(
                    f"the published checkpoint of tree size {checkpoint.tree_size} covers more entries"
                    f" than the rebuilt log holds ({len(hashes)})"
                )
            if merkle.root(hashes[: checkpoint.tree_size]) != checkpoint.root_hash:
                raise RebuildRefused(
                    f"the rebuilt log does not match the published checkpoint of tree size"
                    f" {checkpoint.tree_size}: nothing was put back"
                )
        rebuilt.checked = published[-1].tree_size
    for text in own_lost:
        raw = text.encode()
        rebuilt.own_after += await log.append(conn, raw, Envelope.from_bytes(raw))
    return rebuilt
