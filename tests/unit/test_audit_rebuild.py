"""The order a restored audit log is rebuilt in (services/audit/order.py, rebuild.py): the order log
read back entry by entry, a range written twice taken once, another entry at a position refused, and
an order that lacks an entry up to the last checkpoint refused."""

import hashlib
from pathlib import Path
from uuid import uuid4

import pytest

from services.audit.order import OrderedEntry, OrderUnreadable, order_log, read
from services.audit.rebuild import RebuildRefused, wanted


def entry(position: int, source: str = "notification") -> OrderedEntry:
    return OrderedEntry(
        position, source, position + 1, uuid4(), hashlib.sha256(bytes([position])).hexdigest()
    )


def write(checkpoints: Path, *entries: OrderedEntry) -> None:
    with order_log(checkpoints).open("a") as out:
        out.writelines(e.line() + "\n" for e in entries)


def test_the_order_log_reads_back_and_a_range_written_twice_counts_once(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints.log"
    assert read(checkpoints) == {}
    first = [entry(0), entry(1, "audit"), entry(2, "allocation")]
    write(checkpoints, *first)
    write(checkpoints, *first[1:], entry(3))  # a checkpoint whose transaction failed, then the next
    ordered = read(checkpoints)
    assert [ordered[p] for p in range(3)] == first and set(ordered) == {0, 1, 2, 3}
    assert wanted(ordered, held=1, signed=4) == [ordered[1], ordered[2], ordered[3]]
    assert wanted(ordered, held=4, signed=4) == []


def test_another_entry_at_a_position_or_a_line_that_is_no_entry_is_refused(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints.log"
    write(checkpoints, entry(0), entry(0))
    with pytest.raises(OrderUnreadable, match="another entry at position 0"):
        read(checkpoints)
    order_log(checkpoints).write_text('{"position": 0}\n')
    with pytest.raises(OrderUnreadable, match="line 1: not an entry"):
        read(checkpoints)


def test_an_order_that_lacks_an_entry_up_to_the_last_checkpoint_is_refused(tmp_path: Path) -> None:
    ordered = {0: entry(0), 1: entry(1), 3: entry(3)}
    with pytest.raises(RebuildRefused, match="lacks the entry at position 2"):
        wanted(ordered, held=1, signed=4)
