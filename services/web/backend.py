"""The five services, reached only over HTTP as the signed-in person: each call carries a short-lived
bearer token with their `sub`, their current role and organisation, and the page's correlation id."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from infra.tokens import TokenIssuer
from services.web.sessions import Person

TOKEN_LIFETIME = timedelta(minutes=5)


class ApiError(Exception):
    """A service said no (4xx) or could not answer (5xx, unreachable): its problem details."""

    def __init__(self, service: str, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{service} answered {status}: {problem.get('detail') or problem.get('title')}")
        self.service = service
        self.status = status
        self.problem = problem

    @property
    def code(self) -> str:
        return str(self.problem.get("code") or "")

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or self.problem.get("title") or "")

    @property
    def field_errors(self) -> list[dict[str, str]]:
        errors = self.problem.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


@dataclass
class Backend:
    """One per process: the HTTP client and where each service is."""

    urls: dict[str, str]
    issuer: TokenIssuer
    client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=30))

    def as_person(self, person: Person, role: str, correlation_id: str) -> "Api":
        token = self.issuer.mint(person.sub, role, person.organisation, ttl=TOKEN_LIFETIME)
        return Api(self, {"Authorization": f"Bearer {token}", "X-Correlation-ID": correlation_id})


@dataclass
class Api:
    """One page's calls, as one person in one role. `calls` counts them (bench/web.py reports it)."""

    backend: Backend
    headers: dict[str, str]
    calls: int = 0

    async def get(self, service: str, path: str, **params: Any) -> Any:
        return (await self.send("GET", service, path, params=params)).json()

    async def post(self, service: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.send("POST", service, path, json=body or {})
        return response.json() if response.content else {}

    async def send(
        self,
        method: str,
        service: str,
        path: str,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """The raw answer (for downloads); a 4xx or 5xx raises ApiError."""
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None and v != ""}
        self.calls += 1
        try:
            response = await self.backend.client.request(
                method, self.backend.urls[service] + path, params=query, json=json, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise ApiError(service, 503, {"code": "service_unreachable", "detail": str(exc)}) from exc
        if response.status_code >= 400:
            raise ApiError(service, response.status_code, _problem(response))
        return response


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, (str, int, float, list)) else str(value)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:300] or response.reason_phrase}
    return body if isinstance(body, dict) else {"detail": str(body)}
