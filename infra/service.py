"""One service's runtime: its database, event store, outbox relay, Kafka consumers and HTTP app.

A service module describes itself with a ServiceDefinition; this module wires it the same way for all.
"""

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, Field

from events.topics import service_topic
from infra import db, kafka
from infra.auth import Caller, TokenVerifier, require_roles
from infra.clock import clock_from_env, system_clock
from infra.eventstore import EventStore, Projection
from infra.fencing import StoreGuard
from infra.http import create_app
from infra.inbox import InboxConsumer, acknowledge_forks, open_forks
from infra.logging import configure_logging, get_logger
from infra.problems import Problem, problem_responses
from infra.relay import OutboxRelay
from infra.sealing import DataKeys, for_service, install
from infra.settings import Settings
from infra.signing import load_signer, verifier_from_env

log = get_logger(__name__)
STOP_SECONDS = 10


@dataclass
class Runtime:
    """What a running service holds; routes reach it as request.app.state.runtime."""

    settings: Settings
    pool: asyncpg.Pool
    store: EventStore
    broker: KafkaBroker
    relay: OutboxRelay
    consumers: list[InboxConsumer[Any]] = field(default_factory=list)
    broker_connected: bool = False
    # Whether the store was restored from a backup and is behind the rest of the system (infra.fencing);
    # None only where no service runs (the offline commands).
    guard: StoreGuard | None = None
    # The service's sense of now; tests move it to cross a date (a training anniversary, a deadline),
    # `leder demo` through simulated months (infra.clock).
    clock: Callable[[], datetime] = field(default=system_clock)

    def today(self) -> date:
        return self.clock().date()

    @property
    def keys(self) -> DataKeys:
        """The service's per-case data keys (infra.sealing), wrapped by its key manager."""
        return for_service(self.settings.service)


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    migrations: Path | None = None
    projections: Callable[[], Sequence[Projection]] = lambda: ()
    consumers: Callable[[Runtime], Sequence[InboxConsumer[Any]]] = lambda runtime: ()
    routers: Sequence[APIRouter] = ()
    # Long-running jobs of the service (schedulers, sweeps), started with it and cancelled at stop.
    tasks: Callable[[Runtime], Sequence[Callable[[], Coroutine[Any, Any, None]]]] = lambda runtime: ()
    # Extra readiness checks of the service's own (the audit service's open gaps, say).
    readiness: Callable[[Runtime], Coroutine[Any, Any, dict[str, Any]]] | None = None

    @property
    def migration_folders(self) -> list[Path]:
        return [self.migrations] if self.migrations and self.migrations.exists() else []


def consumer_group(settings: Settings, consumer: InboxConsumer[Any]) -> str:
    """The Kafka consumer group of one of the service's consumers, as build_app subscribes it (its
    committed offsets say what it has handled: leder.recovery reads them; the restore test fails if
    the two differ)."""
    return f"{settings.topic_prefix}leder.{settings.service}.{consumer.name}"


async def open_store(definition: ServiceDefinition, settings: Settings) -> EventStore:
    """Create (if need be) and migrate the service's database; return its event store."""
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url)
    await db.migrate(pool, *definition.migration_folders)
    return EventStore(pool, definition.name, definition.projections())


def build_app(definition: ServiceDefinition, settings: Settings, keys: DataKeys | None = None) -> FastAPI:
    """`keys`: the service's data keys; by default over the key manager the environment names."""
    runtime_box: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(definition.name)
        # Built at start-up, so a misconfigured key manager stops the service before it takes anything.
        if keys is not None:
            install(keys)
        for_service(definition.name)
        # The event keys too (infra.signing): a service that cannot sign, or cannot check what it
        # consumes, must not start.
        signer = load_signer(definition.name)
        verifier = verifier_from_env(settings.topic_prefix)
        if verifier.pinned.get(signer.key_id) is None:
            raise RuntimeError(
                f"the {definition.name} service's event key ({signer.key_id}) is not among the pinned public"
                f" keys ({verifier.pinned.path}): no consumer would accept what it publishes"
            )
        store = await open_store(definition, settings)
        store.clock = clock = clock_from_env()
        if clock is not system_clock:
            log.warning("simulated_clock", file=os.environ.get("LEDER_CLOCK_FILE"), now=clock().isoformat())
        broker = kafka.broker(settings.kafka_bootstrap)
        topic = service_topic(definition.name, settings.topic_prefix)
        # Restored from a backup? The identity says at once; the topic's last records and the audit log's
        # high-water marks say whether the store is behind. Until the store is compared (and recovered
        # if need be) its relay publishes nothing and its consumers wait; commands wait too if the
        # identity changed (infra.fencing).
        guard = StoreGuard(
            store,
            settings.kafka_bootstrap,
            topic,
            verifier,
            # Where the audit log says how far it has logged each service: a store behind it lost
            # events even when its own topic no longer holds them (services.audit.highwater).
            audit_topic=service_topic("audit", settings.topic_prefix),
        )
        await guard.open()
        relay = OutboxRelay(
            store,
            settings.kafka_bootstrap,
            topic,
            partitions=settings.topic_partitions,
            signer=signer,
            fence=guard.publish_fence,
        )
        runtime = Runtime(
            settings=settings,
            pool=store.pool,
            store=store,
            broker=broker,
            relay=relay,
            clock=clock,
            guard=guard,
        )
        runtime.consumers = list(definition.consumers(runtime))
        for consumer in runtime.consumers:
            # Every consumer of a service's topic checks each record's signature before reading it,
            # whoever wrote the consumer (the partner topic is vouched for by the broker's principals).
            if consumer.verify is None and verifier.owner(consumer.topic) is not None:
                consumer.verify = verifier
            consumer.subscribe(
                broker, group_id=f"{settings.topic_prefix}leder.{definition.name}.{consumer.name}"
            )
        app.state.runtime = runtime_box["runtime"] = runtime
        tasks = [
            asyncio.create_task(guard.run(), name="store-guard"),
            asyncio.create_task(relay.run(), name="relay"),
            asyncio.create_task(_start_broker(runtime), name="broker"),
            *(asyncio.create_task(_once_clear(guard, job)) for job in definition.tasks(runtime)),
        ]
        # What start-up built (modules, schemas, routes, pools) lives as long as the service: frozen, the
        # collector's full passes no longer walk it, which was the tail of a case replay (bench.audit).
        gc.freeze()
        log.info("service_started", port=settings.http_port)
        try:
            yield
        finally:
            # A stop is bounded: what does not end in its time is named in the log and left behind, so
            # that a stuck job or connection never keeps a service (or a test) from stopping.
            for task in tasks:
                task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=STOP_SECONDS)
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: a job that failed as it stopped is not news
            if stuck:
                log.error("service_jobs_did_not_stop", jobs=[t.get_name() for t in stuck])
            with suppress(Exception):
                await asyncio.wait_for(broker.stop(), STOP_SECONDS)
            try:
                await asyncio.wait_for(store.pool.close(), STOP_SECONDS)
            except TimeoutError:
                log.error("database_connections_did_not_close", seconds=STOP_SECONDS)
                store.pool.terminate()
            log.info("service_stopped")

    async def readiness() -> dict[str, Any]:
        runtime = runtime_box.get("runtime")
        if runtime is None:
            return {"started": False}
        database: dict[str, object]
        try:
            await runtime.pool.fetchval("SELECT 1")
            database = {"ok": True}
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            database = {"ok": False, "error": repr(exc)}
        # Each consumer on one message longer than LEDER_CONSUMER_STUCK_SECONDS (infra.inbox).
        stuck = [message for consumer in runtime.consumers for message in consumer.stuck()]
        checks: dict[str, Any] = {
            "database": database,
            # An instance whose relay stands by (another instance of the service publishes) is
            # ready: it takes requests and consumes; only the lock holder publishes.
            "relay": {
                "ok": runtime.relay.connected or runtime.relay.standing_by,
                "standby": runtime.relay.standing_by,
            },
            "broker": {"ok": runtime.broker_connected},
            "consumers": {"ok": not stuck, "stuck": stuck},
        }
        if runtime.guard is not None:
            # Restored from a backup and behind the rest of the system: says why, and how to recover.
            checks["store"] = runtime.guard.readiness()
        if database["ok"]:
            # Two events met at one place of a source's history (infra.inbox): not ready until an
            # operator has acknowledged each (`leder audit forks --ack`, POST /forks/{id}/acknowledge).
            forks = await open_forks(runtime.pool)
            checks["forks"] = {"ok": not forks, "open": forks}
        if definition.readiness is not None and database["ok"]:
            checks |= await definition.readiness(runtime)
        return checks

    tokens = TokenVerifier(settings.tokens)
    app = create_app(definition.name, tokens, lifespan=lifespan, readiness=readiness)
    app.include_router(event_feed)
    for router in definition.routers:
        app.include_router(router)
    return app


async def _once_clear(guard: StoreGuard, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """A job of the service (a sweep that shreds keys, a scheduler) starts once the store is known not
    to be restored and behind: acting on a restored store's old state could do what was undone."""
    await guard.clear.wait()
    await job()


async def _start_broker(runtime: Runtime) -> None:
    """Consumers connect when the broker answers and the store is not fenced (a consumer's effects are
    appends, which a fenced store refuses); the HTTP API serves meanwhile."""
    if runtime.guard is not None:
        await runtime.guard.clear.wait()
    delay = 0.5
    while True:
        try:
            await kafka.start_broker(runtime.broker)
            runtime.broker_connected = True
            log.info("broker_connected")
            return
        except (KafkaError, OSError) as exc:
            log.warning("broker_unavailable", error=repr(exc), retry_in=delay)
            with suppress(Exception):
                await runtime.broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


event_feed = APIRouter(tags=["events"])


class EventFeed(BaseModel):
    events: list[str] = Field(
        description="each event's canonical envelope, as the JSON text the service stored and published "
        "(the audit log hashes these bytes)"
    )
    last_sequence: int = Field(description="the service's latest source_sequence")


@event_feed.get("/events")
async def feed(
    request: Request,
    _: Annotated[Caller, Depends(require_roles("ig_officer", "system"))],
    after: Annotated[int, Query(ge=0, le=2**31 - 1, description="the source_sequence to start after")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> EventFeed:
    """The service's events in sequence order, as canonical envelopes: what the audit service's
    reconciliation fetches when its log has a gap."""
    runtime: Runtime = request.app.state.runtime
    rows = await runtime.store.read_all_raw(after, limit)
    return EventFeed(
        events=[envelope for _, envelope in rows], last_sequence=await runtime.store.last_sequence()
    )


class ForksAcknowledged(BaseModel):
    acknowledged: list[int] = Field(description="the forks this acknowledgement cleared")


@event_feed.post("/forks/{fork_id}/acknowledge", responses=problem_responses(404))
async def acknowledge_fork(
    request: Request,
    caller: Annotated[Caller, Depends(require_roles("ig_officer"))],
    fork_id: Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the fork's id, as /readyz lists it")],
) -> ForksAcknowledged:
    """An operator has looked at a fork this service met (infra.inbox: two events at one stream
    version) and dealt with it, recovering its source if need be: it no longer keeps /readyz false."""
    runtime: Runtime = request.app.state.runtime
    cleared = await acknowledge_forks(runtime.pool, [fork_id], caller.sub)
    if not cleared:
        raise Problem(404, "unknown_fork", f"no open fork {fork_id}")
    log.warning("fork_acknowledged", fork_id=fork_id, by=caller.sub)
    return ForksAcknowledged(acknowledged=cleared)
