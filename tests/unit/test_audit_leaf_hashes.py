"""Reading the audit log's leaf hashes from a binary COPY: every value, in order, or nothing."""

import hashlib
import struct

from services.audit.log import hashes_from_copy

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)


def copy_of(values: list[bytes]) -> bytes:
    """PostgreSQL's binary COPY format, as its documentation describes it, for one bytea column."""
    rows = b"".join(struct.pack(">hi", 1, len(v)) + v for v in values)
    return HEADER + rows + TRAILER


def test_every_hash_comes_back_in_order() -> None:
    hashes = [hashlib.sha256(str(i).encode()).digest() for i in range(1000)]
    assert hashes_from_copy(copy_of(hashes)) == hashes
    assert hashes_from_copy(copy_of([])) == []


def test_a_value_of_another_length_or_a_broken_copy_gives_nothing_rather_than_wrong_hashes() -> None:
    hashes = [hashlib.sha256(str(i).encode()).digest() for i in range(5)]
    assert hashes_from_copy(copy_of([*hashes[:2], hashes[2][:31], hashes[3] + b"x", hashes[4]])) is None
    assert hashes_from_copy(copy_of([*hashes[:2], hashes[2][:-6], hashes[3] + bytes(6)])) is None
    assert hashes_from_copy(copy_of(hashes)[:-1]) is None
    assert hashes_from_copy(copy_of(hashes)[1:]) is None
    assert hashes_from_copy(b"") is None
