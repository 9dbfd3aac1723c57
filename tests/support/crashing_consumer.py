"""A consumer process for fault tests: applies envelopes through the inbox into an `effects` table,
and with --crash-after N kills itself right after the database commit of its Nth message, before
the offset is committed (os._exit: no cleanup, as kill -9 would)."""

import argparse
import asyncio
import os

import asyncpg

from events import Envelope
from infra import db, kafka
from infra.inbox import Delivery, InboxConsumer, envelope_order, parse_envelope
from infra.logging import configure_logging
from tests.support import events as _test_events  # noqa: F401


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--crash-after", type=int, default=0)
    args = parser.parse_args()
    configure_logging("crashing-consumer")
    pool = await db.create_pool(args.database_url)
    await db.migrate(pool)
    await pool.execute("CREATE TABLE IF NOT EXISTS effects (n serial PRIMARY KEY, event_id uuid NOT NULL)")
    handled = 0

    async def apply(conn: asyncpg.Connection, envelope: Envelope, _: Delivery) -> None:
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", envelope.event_id)

    def after_commit(_: Envelope) -> None:
        nonlocal handled
        handled += 1
        if handled == args.crash_after:
            os._exit(137)

    consumer = InboxConsumer(
        name="effects",
        topic=args.topic,
        pool=pool,
        apply=apply,
        parse=parse_envelope,
        message_id=lambda e: str(e.event_id),
        order=envelope_order,
        on_handled=after_commit,
    )
    broker = kafka.broker(args.bootstrap)
    consumer.subscribe(broker, group_id=f"{args.topic}.effects")
    await broker.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
