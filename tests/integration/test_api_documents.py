"""Every service documents its HTTP API where it runs: /docs and /redoc work without the internet (their
assets come from the service itself), and the OpenAPI document says how to authenticate, what each
success returns and the problem details each refusal returns."""

import importlib
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from events.topics import SERVICES, service_topic
from infra.service import build_app
from leder.docs import asyncapi, handled_by_topic, openapi

BASE = "http://service"
PAGE_REFERENCES = re.compile(
    r"""(?:src|href)\s*=\s*["']([^"']+)["']|(?:url|oauth2RedirectUrl)\s*:\s*["']([^"']+)["']"""
)
# The services whose routes declare response models, service by service until all do.
CONVERTED: list[str] = ["notification", "audit", "allocation", "governance", "review"]
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+""")


def _app(service: str) -> FastAPI:
    from leder import docs

    return build_app(docs._definition(service), docs._settings(service))


@pytest.fixture(params=SERVICES)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The service's app without its lifespan: documentation needs no database or broker."""
    transport = httpx.ASGITransport(app=_app(request.param))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_documentation_pages_load_everything_from_the_service(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    references = [a or b for a, b in PAGE_REFERENCES.findall(html)]
    assert any(r.endswith(".js") for r in references), references
    for reference in references:
        url = urljoin(BASE + page, reference)
        assert urlsplit(url).netloc == urlsplit(BASE).netloc, f"{page} loads {reference} from elsewhere"
        asset = await client.get(url)
        assert asset.status_code == 200, f"{page} refers to {reference}, which answers {asset.status_code}"
    # Nothing else on the page reaches out either (a favicon, web fonts, a validator badge).
    assert not ABSOLUTE_URL.findall(re.sub(r"<!--.*?-->", "", html, flags=re.S)), html


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def _specific(schema: dict[str, Any]) -> bool:
    """A schema that says what comes back: a model, a list of something specific, or text."""
    if "$ref" in schema:
        return True
    if schema.get("type") == "array":
        return _specific(schema.get("items", {}))
    if "anyOf" in schema or "oneOf" in schema:
        return all(_specific(s) for s in schema.get("anyOf", schema.get("oneOf", [])))
    return schema.get("type") in ("string", "null") or bool(schema.get("properties"))


@pytest.mark.parametrize("service", SERVICES)
def test_the_openapi_document_declares_the_bearer_scheme(service: str) -> None:
    document = openapi(service)
    schemes = document["components"]["securitySchemes"]
    assert schemes == {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    for path, method, op in _operations(document):
        if path in ("/healthz", "/readyz"):
            assert op.get("security", []) == [], path
        else:
            assert op.get("security") == [{"bearer": []}], f"{method} {path} names no way to authenticate"


async def test_every_operation_documented_as_needing_a_token_refuses_a_caller_without_one(
    client: httpx.AsyncClient,
) -> None:
    """The document's `security` is what the API does: each such operation answers 401 problem details."""
    document = (await client.get("/openapi.json")).json()
    for path, method, op in _operations(document):
        if op.get("security"):
            url = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path)
            response = await client.request(method, url, json={})
            assert response.status_code == 401, f"{method.upper()} {path} answers {response.status_code}"
            assert response.json()["code"] == "unauthenticated"


@pytest.mark.parametrize("service", ["(health and events)", *CONVERTED])
def test_every_success_response_has_a_schema(service: str) -> None:
    vague = []
    operations = _operations(openapi(service if service in SERVICES else "audit"))
    if service not in SERVICES:
        operations = [o for o in operations if o[0] in ("/healthz", "/readyz", "/events")]
    for path, method, op in operations:
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            content = response.get("content", {})
            if not content or not all(_specific(c.get("schema", {})) for c in content.values()):
                vague.append(f"{method.upper()} {path} {status}")
    assert not vague, "success responses without a schema:\n" + "\n".join(vague)


@pytest.mark.parametrize("service", SERVICES)
def test_refusals_are_documented_as_the_problem_details_returned(service: str) -> None:
    """Each route documents what it can refuse: 401 and 403 where it needs a token, 404 where its path
    names something, 409 for commands, 422 where it takes input; each as ProblemDetails."""
    document = openapi(service)
    problem = document["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "code", "detail", "instance"} <= set(problem["required"])
    assert {"errors", "violations", "missing"} <= set(problem["properties"])
    documented: set[str] = set()
    for path, method, op in _operations(document):
        if path in ("/healthz", "/readyz"):
            continue
        wanted = {"401", "403"}
        if "{" in path or method != "get":
            wanted.add("404")
        if method != "get":
            wanted.add("409")
        if op.get("parameters") or op.get("requestBody"):
            wanted.add("422")
        for status in wanted:
            response = op["responses"].get(status)
            assert response, f"{method.upper()} {path} does not document {status}"
            assert response["content"] == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
            }, (method, path, status)
            documented.add(status)
    assert documented == {"401", "403", "404", "409", "422"}
    assert "HTTPValidationError" not in document["components"]["schemas"], "422 is a problem, not FastAPI's"


@pytest.mark.parametrize("service", ["allocation", "review", "governance"])
def test_the_asyncapi_document_lists_what_the_dispatch_table_handles(service: str) -> None:
    """Each receive operation names the event types of its topic that the consumers' table dispatches,
    and together they are the table's keys: an event added to or dropped from HANDLERS changes the
    document, and none is listed that the service ignores."""
    table = importlib.import_module(f"services.{service}.consumers").HANDLERS
    by_topic = handled_by_topic(asyncapi(service))
    listed = [event_type for types in by_topic.values() for event_type in types]
    assert sorted(listed) == sorted(cls.event_type for cls in table)
    for topic, types in by_topic.items():
        assert all(topic == service_topic(t.split(".", 1)[0]) for t in types), (topic, types)


@pytest.mark.parametrize("service", ["notification", "audit"])
def test_a_service_without_a_dispatch_table_lists_no_event_types(service: str) -> None:
    assert not hasattr(importlib.import_module(f"services.{service}.consumers"), "HANDLERS")
    assert all(types == [] for types in handled_by_topic(asyncapi(service)).values())
