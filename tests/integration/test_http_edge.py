"""The HTTP edge every service shares: bearer tokens, roles, problem details, correlation ids."""

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from infra.auth import Caller, TokenVerifier, require_roles
from infra.embedded import free_port
from infra.eventstore import Context, EventStore
from infra.http import CORRELATION_HEADER, create_app
from tests.support import tokens
from tests.support.events import NoteRecorded


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=200)
    expected_version: int = Field(ge=0)


def make_app(store: EventStore) -> httpx.AsyncClient:
    router = APIRouter()

    @router.post("/cases/{case_id}/notes", status_code=201)
    async def record_note(
        case_id: str,
        body: NoteIn,
        request: Request,
        caller: Annotated[Caller, Depends(require_roles("lac", "reviewer"))],
    ) -> dict[str, object]:
        context = Context(actor=caller.actor, correlation_id=request.state.correlation_id)
        [envelope] = await store.append(
            case_id, body.expected_version, [NoteRecorded(text=body.text)], context
        )
        return {"event_id": str(envelope.event_id), "stream_version": envelope.stream_version}

    app = create_app("test", TokenVerifier(tokens.trust()))
    app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(store: EventStore) -> AsyncIterator[httpx.AsyncClient]:
    async with make_app(store) as c:
        yield c


def bearer(role: str = "lac") -> dict[str, str]:
    return tokens.bearer("alice", role)


def claims(**changed: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": "alice",
        "role": "lac",
        "iss": "leder",
        "aud": "leder-services",
        "iat": now,
        "exp": now + 60,
    } | changed


STRANGER = Ed25519PrivateKey.generate()


NOTE = {"text": "spoke to the GP", "expected_version": 0}


async def test_a_request_without_a_token_gets_401_problem_details(client: httpx.AsyncClient) -> None:
    response = await client.post("/cases/c1/notes", json=NOTE)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "token",
    [
        tokens.signed(claims(), STRANGER),
        tokens.token("alice", "lac", ttl=timedelta(seconds=-60)),
        jwt.encode(claims(), "s" * 64, algorithm="HS256", headers={"kid": tokens.ISSUER.kid}),
        jwt.encode(claims(), "s" * 64, algorithm="HS384"),
        tokens.signed(claims(role="superuser")),
        tokens.signed(claims(role=["lac"])),
        tokens.signed(claims(role={"lac": True})),
        tokens.signed(claims(sub="ali\x00ce")),
        tokens.signed(claims(sub=["alice"])),
        tokens.signed(claims(organisation={"ods": "QHM"})),
        tokens.signed(claims(exp=int(time.time()) + 9 * 3600)),
        tokens.signed(claims(aud="another-service")),
        tokens.signed(claims(iss="someone-else")),
        tokens.signed(claims(role="system")),
        "not-a-jwt",
    ],
    ids=[
        "unknown-key",
        "expired",
        "hs256-naming-the-trusted-key",
        "hs384",
        "unknown-role",
        "role-a-list",
        "role-an-object",
        "nul-in-sub",
        "sub-a-list",
        "organisation-an-object",
        "lives-longer-than-8-hours",
        "other-audience",
        "other-issuer",
        "system-role-by-the-people-key",
        "garbage",
    ],
)
async def test_a_bad_token_gets_401(client: httpx.AsyncClient, store: EventStore, token: str) -> None:
    response = await client.post("/cases/c1/notes", json=NOTE, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert await store.last_sequence() == 0


async def test_a_role_that_may_not_gets_403_and_writes_nothing(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    response = await client.post("/cases/c1/notes", json=NOTE, headers=bearer("ig_officer"))
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert await store.last_sequence() == 0


async def test_invalid_input_gets_422_naming_every_field(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    response = await client.post(
        "/cases/c1/notes", json={"text": "", "expected_version": -1}, headers=bearer()
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_failed" and problem["status"] == 422
    assert {e["field"] for e in problem["errors"]} == {"text", "expected_version"}
    assert await store.last_sequence() == 0


async def test_a_stale_expected_version_gets_409(client: httpx.AsyncClient, store: EventStore) -> None:
    assert (await client.post("/cases/c1/notes", json=NOTE, headers=bearer())).status_code == 201
    response = await client.post("/cases/c1/notes", json=NOTE, headers=bearer())
    assert response.status_code == 409
    assert response.json()["code"] == "concurrent_change"
    assert await store.last_sequence() == 1


async def test_the_correlation_id_of_a_request_is_echoed_and_carried_by_its_events(
    client: httpx.AsyncClient, store: EventStore
) -> None:
    response = await client.post(
        "/cases/c1/notes", json=NOTE, headers={**bearer("reviewer"), CORRELATION_HEADER: "corr-42"}
    )
    assert response.status_code == 201
    assert response.headers[CORRELATION_HEADER] == "corr-42"
    [event] = await store.read_stream("c1")
    assert event.correlation_id == "corr-42"
    assert (event.actor.kind, event.actor.id, event.actor.role) == ("user", "alice", "reviewer")

    generated = await client.get("/healthz")
    assert len(generated.headers[CORRELATION_HEADER]) == 36


async def test_health_endpoints_answer_without_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "service": "test"}
    assert (await client.get("/readyz")).status_code == 200


async def test_a_command_while_the_database_is_unreachable_gets_503_problem_details_with_retry_after() -> (
    None
):
    # A pool towards a port nothing listens on: what a service's pool meets while PostgreSQL restarts.
    pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/leder", min_size=0)
    try:
        async with make_app(EventStore(pool, "test")) as client:
            response = await client.post("/cases/c1/notes", json=NOTE, headers=bearer())
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["Retry-After"] == "1"
        assert response.json()["code"] == "database_unavailable"
    finally:
        await pool.close()
