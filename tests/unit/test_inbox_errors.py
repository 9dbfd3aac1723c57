"""How the inbox meets a message it cannot apply: a refusal of the message's data is tried a bounded
number of times and then dead-lettered with the database's reason; a transient failure (the database
or the broker away) is tried again without limit; a consumer on one message too long says so.

The inbox here has a fake pool and broker; each call of `handle` is one delivery, and a raise is the
rewind that has the broker deliver the message again (as faststream does on a nack)."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import BaseModel, ValidationError

from infra import inbox
from infra.inbox import Delivery, InboxConsumer, Unprocessable, is_transient
from infra.keys import KeyDestroyed, KeyManagerError

TOPIC = "t.leder.test.events"
# The inbox's waits are not waited here (`no_waiting`); a test's own are.
wait = asyncio.sleep


class FakeConnection:
    def __init__(self) -> None:
        self.inbox: set[str] = set()
        self.answers = True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def fetchval(self, query: str, *args: Any) -> bool | int | None:
        if query == "SELECT 1":  # the inbox asking whether the database answers
            if not self.answers:
                raise ConnectionRefusedError(111, "Connect call failed")
            return 1
        assert query.startswith("INSERT INTO inbox")
        message_id = args[1]
        if message_id in self.inbox:
            return None
        self.inbox.add(message_id)
        return True


class FakePool:
    def __init__(self) -> None:
        self.conn = FakeConnection()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConnection]:
        # What the inbox recorded is undone when the transaction fails, as the database's would be.
        before = set(self.conn.inbox)
        try:
            yield self.conn
        except BaseException:
            self.conn.inbox = before
            raise


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[tuple[bytes, str, dict[str, str]]] = []

    async def publish(self, body: bytes, *, topic: str, key: bytes | None, headers: dict[str, str]) -> None:
        self.published.append((body, topic, headers))


class Flaky:
    """An apply that raises the given errors in turn, then applies."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.applied: list[bytes] = []

    async def __call__(self, conn: Any, message: bytes, delivery: Delivery) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.applied.append(message)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The inbox's waits between tries, recorded instead of waited."""
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        await wait(0)

    monkeypatch.setattr(inbox.asyncio, "sleep", sleep)
    yield waited


def consumer(apply: Flaky, **kw: Any) -> tuple[InboxConsumer[bytes], FakeBroker]:
    made: InboxConsumer[bytes] = InboxConsumer(
        name="recorder",
        topic=TOPIC,
        pool=FakePool(),  # type: ignore[arg-type]
        apply=apply,
        parse=lambda raw: raw,
        message_id=lambda raw: raw.decode(),
        **kw,
    )
    broker = FakeBroker()
    made.broker = broker  # type: ignore[assignment]
    return made, broker


def delivery(offset: int, partition: int = 0) -> Delivery:
    return Delivery(TOPIC, partition, offset, b"k", {"correlation_id": "c-1"})


async def deliver(c: InboxConsumer[bytes], raw: bytes, where: Delivery, times: int = 100) -> int:
    """Deliver until the consumer is past the message; how many deliveries that took."""
    for n in range(1, times + 1):
        try:
            await c.handle(raw, where)
            return n
        except Exception:
            continue
    raise AssertionError(f"still not past the message after {times} deliveries")


NUL_REFUSED = asyncpg.exceptions.CharacterNotInRepertoireError(
    'invalid byte sequence for encoding "UTF8": 0x00'
)


async def test_a_message_whose_effects_the_database_refuses_is_tried_three_times_then_dead_lettered() -> None:
    apply = Flaky(NUL_REFUSED, NUL_REFUSED, NUL_REFUSED)
    c, broker = consumer(apply)
    assert await deliver(c, b"bad", delivery(7)) == 3
    assert apply.calls == 3 and apply.applied == []
    [(body, topic, headers)] = broker.published
    assert (body, topic) == (b"bad", f"{TOPIC}.dlq")
    assert headers["dlq_error_type"] == "CharacterNotInRepertoireError"
    assert headers["original_offset"] == "7" and headers["correlation_id"] == "c-1"
    [reason] = json.loads(headers["dlq_reason"])
    assert reason["type"] == "database_refused" and reason["sqlstate"] == "22021"
    assert "0x00" in reason["message"]
    # The message after it is applied, and nothing is left of the refused one.
    assert await deliver(c, b"good", delivery(8)) == 1
    assert apply.applied == [b"good"] and c.stuck() == []


@pytest.mark.parametrize(
    "refusal",
    [
        asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.exceptions.ProgramLimitExceededError("index row size 3000 exceeds btree maximum"),
        asyncpg.exceptions.RaiseError("the audit log is append-only"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        KeyDestroyed("case-key"),
        ValueError("a value no event may hold"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_refusal_of_the_message_itself_is_bounded(refusal: Exception) -> None:
    apply = Flaky(*[refusal] * 10)
    c, broker = consumer(apply, max_tries=4)
    assert await deliver(c, b"bad", delivery(1)) == 4
    [(_, _, headers)] = broker.published
    assert headers["dlq_error_type"] == type(refusal).__name__
    assert json.loads(headers["dlq_reason"])[0]["message"]


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.UndefinedTableError('relation "applied" does not exist'),
        TimeoutError(),
        KafkaConnectionError(),
        KeyManagerError("Vault did not answer"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_transient_failure_is_tried_again_without_limit(
    failure: Exception, no_waiting: list[float]
) -> None:
    apply = Flaky(*[failure] * 25)
    c, broker = consumer(apply)
    assert await deliver(c, b"m", delivery(3)) == 26
    assert apply.applied == [b"m"] and broker.published == []
    # A little later each time, never more than 5 s apart.
    assert no_waiting[:3] == [0.2, 0.4, 0.8] and max(no_waiting) == 5.0


async def test_a_refusal_while_the_database_does_not_answer_is_not_set_aside() -> None:
    # A failure of some other kind, met as the database went away: only once the database answers
    # again is it judged the message's fault.
    apply = Flaky(*[RuntimeError("the driver's own failure")] * 8)
    c, broker = consumer(apply)
    conn = c.pool.conn  # type: ignore[attr-defined]
    conn.answers = False
    for _ in range(6):
        with pytest.raises(RuntimeError):
            await c.handle(b"m", delivery(2))
    assert broker.published == []
    conn.answers = True
    assert await deliver(c, b"m", delivery(2)) == 1  # the seventh try is past the limit: set aside
    assert len(broker.published) == 1


def test_which_failures_are_transient() -> None:
    assert is_transient(asyncpg.exceptions.InterfaceError("pool is closing"))
    assert is_transient(asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"))
    assert is_transient(asyncpg.exceptions.LockNotAvailableError("could not obtain lock"))
    assert is_transient(asyncpg.exceptions.InsufficientPrivilegeError("permission denied for table"))
    assert not is_transient(asyncpg.exceptions.StringDataRightTruncationError("value too long"))
    assert not is_transient(asyncpg.exceptions.ForeignKeyViolationError("violates foreign key"))
    assert not is_transient(asyncpg.exceptions.CheckViolationError("violates check constraint"))
    assert not is_transient(asyncpg.exceptions.CardinalityViolationError("more than one row"))
    assert not is_transient(RuntimeError("a handler's own failure"))


async def test_a_validation_error_in_the_handler_is_dead_lettered_naming_the_field() -> None:
    class Note(BaseModel):
        text: str

    try:
        Note.model_validate({"text": 1})
    except ValidationError as invalid:
        refused = invalid
    apply = Flaky(*[refused] * 3)
    c, broker = consumer(apply)
    await deliver(c, b"bad", delivery(1))
    [(_, _, headers)] = broker.published
    assert [r["field"] for r in json.loads(headers["dlq_reason"])] == ["text"]


async def test_unprocessable_goes_to_the_dlq_at_once() -> None:
    apply = Flaky(Unprocessable([{"field": "x", "message": "no", "type": "rule"}]))
    c, broker = consumer(apply)
    assert await deliver(c, b"bad", delivery(1)) == 1
    assert json.loads(broker.published[0][2]["dlq_reason"]) == [
        {"field": "x", "message": "no", "type": "rule"}
    ]


async def test_a_consumer_failing_on_one_message_too_long_is_stuck_until_it_is_past(
    caplog: pytest.LogCaptureFixture,
) -> None:
    apply = Flaky(*[asyncpg.exceptions.AdminShutdownError("terminating connection")] * 3)
    c, _ = consumer(apply, stuck_seconds=0.2)
    where = delivery(41, partition=1)
    with pytest.raises(asyncpg.exceptions.AdminShutdownError):
        await c.handle(b"m", where)
    assert c.stuck() == []  # failing, but not for long yet
    await wait(0.25)
    with pytest.raises(asyncpg.exceptions.AdminShutdownError):
        await c.handle(b"m", where)
    [stuck] = c.stuck()
    assert stuck["consumer"] == "recorder"
    assert (stuck["topic"], stuck["partition"], stuck["offset"]) == (TOPIC, 1, 41)
    assert stuck["tries"] == 2 and stuck["seconds"] >= 0.2
    assert "AdminShutdownError (57P01)" in stuck["last_error"]
    await deliver(c, b"m", where)
    assert c.stuck() == [] and apply.applied == [b"m"]


async def test_a_handler_that_does_not_return_shows_as_stuck() -> None:
    release = asyncio.Event()

    async def hangs(conn: Any, message: bytes, _: Delivery) -> None:
        await release.wait()

    c: InboxConsumer[bytes] = InboxConsumer(
        name="slow",
        topic=TOPIC,
        pool=FakePool(),  # type: ignore[arg-type]
        apply=hangs,
        parse=lambda raw: raw,
        message_id=lambda raw: raw.decode(),
        stuck_seconds=0.1,
    )
    handling = asyncio.create_task(c.handle(b"m", delivery(5)))
    await wait(0.2)
    [stuck] = c.stuck()
    assert stuck["offset"] == 5 and "not returned" in stuck["last_error"]
    release.set()
    await handling
    assert c.stuck() == []


async def test_a_partition_that_went_elsewhere_is_not_reported_stuck() -> None:
    apply = Flaky(ConnectionResetError())
    c, _ = consumer(apply, stuck_seconds=0.1)
    with pytest.raises(ConnectionResetError):
        await c.handle(b"m", delivery(9))
    # Never delivered again (a rebalance gave the partition to another consumer of the group).
    await wait(0.15)
    assert c.stuck() == []


async def test_moving_on_in_a_partition_forgets_the_message_before() -> None:
    apply = Flaky(ConnectionResetError())
    c, _ = consumer(apply, stuck_seconds=0.05)
    with pytest.raises(ConnectionResetError):
        await c.handle(b"m", delivery(9))
    # The group was reset past it: the next message of the partition comes instead.
    await deliver(c, b"n", delivery(10))
    await wait(0.06)
    assert c.stuck() == []


def test_a_header_no_database_can_store_is_dropped() -> None:
    headers = inbox._storable_headers(
        [("correlation_id", b"a\x00b"), ("event_type", b"review.NoteAdded"), ("x\x00", b"y"), ("n", None)]
    )
    assert headers == {"event_type": "review.NoteAdded", "n": ""}
