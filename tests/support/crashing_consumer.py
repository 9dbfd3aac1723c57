"""A consumer process for fault tests: applies envelopes through the inbox into an `effects` table,
and kills itself (os._exit: no cleanup, as kill -9 would)
- with --crash-after N right after the database commit of its Nth message, before the offset is
  committed: with --batch-size 1 (the default) the commit of that message alone, with a larger one
  the commit of the batch it is in;
- with --crash-in-apply N while applying its Nth message, before its transaction commits: in the
  middle of a batch when --batch-size is larger than 1."""

import argparse
import asyncio
import os

from events import Envelope
from infra import db, kafka
from infra.db import Connection
from infra.inbox import Delivery, InboxConsumer, envelope_order, parse_envelope
from infra.logging import configure_logging
from tests.support import events as _test_events  # noqa: F401


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--crash-after", type=int, default=0)
    parser.add_argument("--crash-in-apply", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    configure_logging("crashing-consumer")
    pool = await db.create_pool(args.database_url)
    await db.migrate(pool)
    await pool.execute("CREATE TABLE IF NOT EXISTS effects (n serial PRIMARY KEY, event_id uuid NOT NULL)")
    handled = applying = 0

    async def apply(conn: Connection, envelope: Envelope, _: Delivery) -> None:
        nonlocal applying
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", envelope.event_id)
        applying += 1
        if applying == args.crash_in_apply:
            os._exit(137)

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
        batch_size=args.batch_size,
    )
    broker = kafka.broker(args.bootstrap)
    consumer.subscribe(broker, group_id=f"{args.topic}.effects")
    await broker.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
