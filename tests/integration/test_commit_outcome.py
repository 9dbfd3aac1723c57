"""A COMMIT the database carried out but could not answer (it restarted, or the network dropped, between
doing it and saying so) is a command that succeeded: the store asks the database which it was, so a
caller is never told "try again" about events that are recorded (and would be recorded twice if it
did). The fault test tests/fault/test_database_restart.py saw exactly this under a real restart."""

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from asyncpg.transaction import Transaction

from events import Actor
from infra.eventstore import Context, EventStore
from tests.support.events import NoteRecorded

pytestmark = pytest.mark.eventstore

CTX = Context(actor=Actor(kind="user", id="alice", role="lac"))

_commit: Callable[[Transaction], Awaitable[None]] = Transaction._Transaction__commit  # type: ignore[attr-defined]


def lose_the_answer_to(commit: Callable[[Transaction], Awaitable[None]]) -> Callable[..., Any]:
    """A transaction's outermost COMMIT that `commit` carries out (or not), after which the connection
    is cut as a restart cuts it, so the client never hears the answer."""

    async def commit_then_cut(self: Transaction) -> None:
        if self._nested:  # a savepoint's release, not the commit
            await _commit(self)
            return
        await commit(self)
        self._connection.terminate()
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    return commit_then_cut


async def test_an_append_whose_commit_answer_is_lost_is_reported_as_done(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = str(uuid4())
    monkeypatch.setattr(Transaction, "_Transaction__commit", lose_the_answer_to(_commit))

    async with store.transaction() as tx:
        written = await store.append(stream, 0, [NoteRecorded(text="kept")], CTX, conn=tx)

    monkeypatch.undo()
    assert [e.event_id for e in await store.read_stream(stream)] == [written[0].event_id]


async def test_an_append_whose_commit_never_ran_is_reported_lost_and_left_nothing(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = str(uuid4())

    async def no_commit(self: Transaction) -> None:
        """The connection is cut before COMMIT reaches the database: the transaction aborts."""

    monkeypatch.setattr(Transaction, "_Transaction__commit", lose_the_answer_to(no_commit))

    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        async with store.transaction() as tx:
            await store.append(stream, 0, [NoteRecorded(text="lost")], CTX, conn=tx)

    monkeypatch.undo()
    assert await store.read_stream(stream) == []


async def test_a_transaction_that_appended_nothing_is_reported_as_the_connection_failed(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an append the store has no transaction id to ask about: the error stands."""
    monkeypatch.setattr(Transaction, "_Transaction__commit", lose_the_answer_to(_commit))

    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        async with store.transaction() as tx:
            await tx.execute("SELECT 1")
