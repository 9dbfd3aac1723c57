"""The inbox's decision for an event of a stream (issue 20): the next version is applied, a later one
waits, and one at a version already passed is a quiet duplicate only when it is the same event, byte
for byte; anything else there is a fork, never ignored."""

import pytest

from infra.inbox import Fork, Held, content_hash, stream_decision

ONE = Held("e1", content_hash(b'{"event_id":"e1","name":"Rae"}'))


def test_the_next_version_is_applied_and_a_later_one_waits_for_it() -> None:
    assert stream_decision(1, 0, None, ONE) == "apply"
    assert stream_decision(6, 5, None, ONE) == "apply"
    assert stream_decision(7, 5, None, ONE) == "wait"


def test_the_same_event_again_is_a_quiet_duplicate() -> None:
    assert stream_decision(1, 3, ONE, Held("e1", ONE.content_hash)) == "duplicate"


def test_another_event_id_at_a_version_applied_is_a_fork() -> None:
    assert stream_decision(1, 3, ONE, Held("e2", ONE.content_hash)) == "fork"
    assert stream_decision(3, 3, ONE, Held("e2", content_hash(b"other"))) == "fork"


def test_the_same_event_id_with_other_bytes_is_a_fork() -> None:
    edited = Held("e1", content_hash(b'{"event_id":"e1","name":"Mallory"}'))
    assert stream_decision(2, 2, ONE, edited) == "fork"


def test_a_version_passed_with_an_event_the_consumer_never_saw_is_a_fork() -> None:
    # No record of what took the version (passed before versions were recorded) and the inbox does
    # not know the event id either: the source said something else there before.
    assert stream_decision(1, 3, None, ONE) == "fork"


def test_an_event_applied_before_hashes_were_kept_is_known_by_its_id() -> None:
    assert stream_decision(1, 3, Held("e1", None), ONE) == "duplicate"
    assert stream_decision(1, 3, Held("e0", None), ONE) == "fork"
    assert stream_decision(1, 3, Held(None, None), ONE) == "fork"


def test_a_fork_is_dead_lettered_with_both_events_named() -> None:
    other = Held("e2", content_hash(b"x"))
    fork = Fork(held=ONE, other=other, source="allocation", source_sequence=4, why="another event")
    [reason] = fork.reasons
    assert reason["type"] == "fork" and reason["field"] == "source_sequence"
    assert (reason["held_event_id"], reason["held_hash"]) == ("e1", ONE.content_hash)
    assert (reason["other_event_id"], reason["other_hash"]) == ("e2", other.content_hash)
    assert "allocation sequence 4" in reason["message"]
    by_stream = Fork(
        held=ONE, other=other, source="allocation", stream="allocation/r-1", stream_version=2, why="w"
    )
    assert by_stream.reasons[0]["field"] == "stream_version"
    assert "allocation/r-1 version 2" in by_stream.reasons[0]["message"]


@pytest.mark.parametrize("held", [ONE, Held("e1", None)])
def test_a_held_event_is_the_same_as_itself(held: Held) -> None:
    assert held.same_as(ONE)
