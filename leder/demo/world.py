"""The running system as the demo's people reach it: each service's HTTP API with a token of the
caller's role, and the partner topic. Nothing here reads a service's database."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaProducer

from events.topics import partner_topic
from infra import kafka
from infra.tokens import TokenIssuer

T = TypeVar("T")


class DemoError(RuntimeError):
    """The system answered something the demo did not expect: it stops and says what."""


@dataclass
class World:
    urls: dict[str, str]
    issuer: TokenIssuer  # the people key `leder up` made: the demo's people get their tokens from it
    bootstrap: str
    prefix: str = ""
    client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=60))
    producer: AIOKafkaProducer | None = None
    calls: int = 0
    published: int = 0
    _tokens: dict[tuple[str, str, str | None], str] = field(default_factory=dict)

    async def start(self) -> None:
        # As a partner publishes: with the principal the environment names (infra.kafka), if any.
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", **kafka.client_options()
        )
        await self.producer.start()

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        await self.client.aclose()

    def token(self, role: str, sub: str, organisation: str | None = None) -> str:
        key = (role, sub, organisation)
        if key not in self._tokens:
            self._tokens[key] = self.issuer.mint(sub, role, organisation)
        return self._tokens[key]

    async def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        role: str,
        sub: str,
        organisation: str | None = None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> httpx.Response:
        """`organisation`: the one the caller acts for (a partner system's token must name it)."""
        response = await self.client.request(
            method,
            self.urls[service] + path,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {self.token(role, sub, organisation)}"},
        )
        self.calls += 1
        if response.status_code not in ok:
            raise DemoError(
                f"{method} {service}{path} as {role} {sub}: {response.status_code} {response.text}"
            )
        return response

    async def publish(self, body: dict[str, Any]) -> None:
        """A partner system's notification on the partner topic, keyed by its notification id."""
        assert self.producer is not None
        await self.producer.send_and_wait(
            partner_topic(self.prefix), json.dumps(body).encode(), key=body["notification_id"].encode()
        )
        self.published += 1


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60) -> T:
    """Until the services have caught up (another service's event travels through the broker)."""
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.02
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise DemoError(f"gave up waiting {timeout:.0f} s for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
