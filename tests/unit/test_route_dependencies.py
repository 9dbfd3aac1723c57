"""The shared route dependencies (infra.deps): the store, today, the correlation id and the context a
command's events are by all come from the request, and the context's caller is the one the route's
require_roles verified: a token is verified once a request, whichever of the two FastAPI resolves
first, and a caller whose role may not call the route is refused whatever the context asked."""

from collections.abc import Awaitable, Callable
from datetime import date
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request, Response
from fastapi.testclient import TestClient

from infra.auth import Caller, Unauthenticated, require_roles
from infra.deps import CommandContext, CorrelationId, ServiceRuntime, Store, Today
from infra.problems import install_problem_handlers

TODAY = date(2026, 3, 14)
LAC = Annotated[Caller, Depends(require_roles("lac"))]


class CountingTokens:
    """Stands in for the TokenVerifier: a token names its caller's role; each verification counted."""

    def __init__(self) -> None:
        self.verified = 0

    async def caller(self, token: str) -> Caller:
        self.verified += 1
        if token == "bad":
            raise Unauthenticated("token does not verify")
        return Caller(sub="alice", role=token)


def _app(tokens: CountingTokens, store: object) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.tokens = tokens
    app.state.runtime = SimpleNamespace(store=store, today=lambda: TODAY)

    @app.middleware("http")
    async def correlate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.correlation_id = request.headers.get("X-Correlation-ID", "none")
        return await call_next(request)

    @app.post("/role-first")
    async def role_first(
        caller: LAC, context: CommandContext, store: Store, today: Today, correlation: CorrelationId
    ) -> dict[str, Any]:
        return {
            "caller": caller.sub,
            "actor": [context.actor.kind, context.actor.id, context.actor.role],
            "correlation_id": context.correlation_id,
            "correlation": correlation,
            "store": store is app.state.runtime.store,
            "today": today.isoformat(),
        }

    @app.post("/context-first")
    async def context_first(context: CommandContext, runtime: ServiceRuntime, caller: LAC) -> dict[str, Any]:
        return {"actor": context.actor.id, "runtime": runtime is app.state.runtime, "caller": caller.sub}

    return app


def test_a_route_gets_the_store_today_and_the_context_of_its_verified_caller() -> None:
    tokens, store = CountingTokens(), object()
    answer = TestClient(_app(tokens, store)).post(
        "/role-first", headers={"Authorization": "Bearer lac", "X-Correlation-ID": "c-1"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "caller": "alice",
        "actor": ["user", "alice", "lac"],
        "correlation_id": "c-1",
        "correlation": "c-1",
        "store": True,
        "today": "2026-03-14",
    }
    assert tokens.verified == 1


@pytest.mark.parametrize("path", ["/role-first", "/context-first"])
def test_the_token_is_verified_once_whichever_dependency_comes_first(path: str) -> None:
    tokens = CountingTokens()
    client = TestClient(_app(tokens, object()))
    for n in range(1, 4):
        assert client.post(path, headers={"Authorization": "Bearer lac"}).status_code == 200
        assert tokens.verified == n


@pytest.mark.parametrize("path", ["/role-first", "/context-first"])
def test_a_role_the_route_does_not_take_is_refused_though_the_context_takes_any(path: str) -> None:
    client = TestClient(_app(CountingTokens(), object()))
    answer = client.post(path, headers={"Authorization": "Bearer reviewer"})
    assert answer.status_code == 403
    assert answer.json()["code"] == "forbidden"


@pytest.mark.parametrize("path", ["/role-first", "/context-first"])
def test_no_token_or_a_bad_one_is_refused(path: str) -> None:
    client = TestClient(_app(CountingTokens(), object()))
    assert client.post(path).json()["code"] == "unauthenticated"
    assert client.post(path, headers={"Authorization": "Bearer bad"}).status_code == 401
