"""The HTTP edge every service shares: correlation ids, request logs with the caller, problem
details, /healthz and /readyz, and the API's documentation: the OpenAPI document (with the bearer scheme
and the problem details each route can return) and the /docs and /redoc pages that show it.

Before any route sees a request, the edge (RequestGuard) refuses what no route should have to: a body
over the size limit (413, decided before the body is read), a body from a caller without a valid token
(401, decided before the body is read or parsed), and text PostgreSQL cannot store (NUL, lone
surrogates) in the path, the query or any string of a JSON body (422 naming the field). Every answer
carries the security headers (no-store, nosniff, frame-ancestors 'none'; HSTS over TLS)."""

import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import parse_qsl
from uuid import uuid4

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.openapi.constants import REF_PREFIX
from fastapi.responses import JSONResponse

# FastAPIOffline: FastAPI whose /docs and /redoc pages load Swagger UI and ReDoc from the service
# itself, not from a CDN (NHS networks may reach none); it serves the assets its wheel ships.
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from events.text import UNSTORABLE, unstorable
from infra.auth import ROLES, TokenVerifier, Unauthenticated, require_roles
from infra.logging import get_logger
from infra.problems import ProblemDetails, install_problem_handlers, problem_response, problem_responses

log = get_logger("http")
CORRELATION_HEADER = "X-Correlation-ID"
# A correlation id is logged and recorded in events: printable ASCII only, at most 100 characters;
# anything else in it is dropped (one left empty is replaced by a fresh id), never refused.
_CORRELATION_UNSAFE = re.compile(r"[^\x21-\x7e]")
MAX_REQUEST_BYTES = 1024 * 1024  # LEDER_MAX_REQUEST_BYTES overrides
# Paths that take no token (probes, API documents): only the size limit and the text check apply.
OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/static-offline-docs")
SECURITY_HEADERS = {
    # Every answer may hold personal or audit data (or an error about it): nothing keeps a copy.
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
HSTS = "max-age=31536000; includeSubDomains"
_AUTHENTICATED = require_roles(*sorted(ROLES))

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]


class ResponseModel(BaseModel):
    """The base of the services' response models: documents the fields a route returns, and passes on
    any field it does not name (a route adding one to its answer never loses it on the way out)."""

    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    service: str


class Readiness(BaseModel):
    ready: bool
    service: str
    checks: dict[str, Any] = Field(
        description="each dependency (database, relay, broker, and the service's own) with `ok` and, "
        "when not, why"
    )


def max_request_bytes() -> int:
    return int(os.environ.get("LEDER_MAX_REQUEST_BYTES") or MAX_REQUEST_BYTES)


def correlation_id(header: str | None) -> str:
    cleaned = _CORRELATION_UNSAFE.sub("", header or "")[:100]
    return cleaned or str(uuid4())


def create_app(
    service: str,
    tokens: TokenVerifier,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    readiness: ReadinessCheck | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """`max_body_bytes`: the largest request body taken (413 above it); LEDER_MAX_REQUEST_BYTES, or
    1 MiB, by default."""
    app = FastAPIOffline(
        title=f"LeDeR {service} service",
        version="1",
        lifespan=lifespan,
        # No badge from the online validator: the page reaches no other host.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )
    app.openapi = _documented(app)  # type: ignore[method-assign]
    app.state.tokens = tokens  # public keys only: no service can sign a caller's token
    install_problem_handlers(app)
    # Added before correlate_and_log, so inside it: the guard's refusals are correlated and logged too.
    app.add_middleware(RequestGuard, max_bytes=max_body_bytes or max_request_bytes())

    @app.middleware("http")
    async def correlate_and_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.correlation_id = correlation_id(request.headers.get(CORRELATION_HEADER))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service=service, correlation_id=request.state.correlation_id)
        started = time.perf_counter()
        response = await call_next(request)
        response.headers[CORRELATION_HEADER] = request.state.correlation_id
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        # The scheme is https when the request came over TLS, or through a proxy uvicorn trusts
        # (FORWARDED_ALLOW_IPS, 127.0.0.1 by default) saying X-Forwarded-Proto: https.
        if request.url.scheme == "https":
            response.headers["Strict-Transport-Security"] = HSTS
        if request.url.path not in ("/healthz", "/readyz"):
            caller = getattr(request.state, "caller", None)
            log.info(
                "http_request",
                method=request.method,
                path=request.url.path,
                status=response.status_code,
                caller=caller.sub if caller else None,
                caller_role=caller.role if caller else None,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return response

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        return Health(status="ok", service=service)

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready: `checks` says what is not"}},
    )
    async def readyz() -> JSONResponse:
        checks = await readiness() if readiness else {}
        ready = all(bool(v.get("ok")) if isinstance(v, dict) else bool(v) for v in checks.values())
        return JSONResponse(
            {"ready": ready, "service": service, "checks": checks}, status_code=200 if ready else 503
        )

    return app


class RequestGuard:
    """What every request passes before a route sees it (a pure ASGI middleware, so that nothing reads
    the body before it has decided):

    1. the path and query hold no text PostgreSQL cannot store (422 naming the parameter);
    2. a declared Content-Length over the limit is refused (413) before a byte of the body is read;
    3. a request with a body needs a valid bearer token before its body is read (401), so an
       unauthenticated caller cannot make the service hold its body; the route checks the role;
    4. the body is read while counting, and refused (413) the moment it passes the limit (a chunked
       body declares no length); at most the limit is ever held;
    5. every string (and key) of a JSON body is text PostgreSQL can store (422 naming the field).
    The body read is then handed to the route as if it came from the client."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = _refused_url(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        declared = request.headers.get("content-length")
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        if declared is not None and not declared.isdigit():
            await _problem(request, 400, "bad_content_length", "Content-Length is not a number")(
                scope, receive, send
            )
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._too_large(request)(scope, receive, send)
            return
        if not chunked and not int(declared or 0):
            await self.app(scope, receive, send)
            return
        if not request.url.path.startswith(OPEN_PATHS):
            try:
                # The same check as every route's require_roles (any role: the route checks its own),
                # made before the body is read.
                await _AUTHENTICATED(request)
            except Unauthenticated as exc:
                await problem_response(request, 401, "unauthenticated", "Authentication required", str(exc))(
                    scope, receive, send
                )
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._too_large(request)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        refusal = _refused_body(request, bytes(body))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self, request: Request) -> Response:
        return _problem(
            request,
            413,
            "request_too_large",
            f"the request body is over the limit of {self.max_bytes} bytes",
        )


def _problem(request: Request, status: int, code: str, detail: str, **extra: Any) -> Response:
    return problem_response(request, status, code, code.replace("_", " ").capitalize(), detail, **extra)


def _unstorable_text(field: str, text: str) -> dict[str, str] | None:
    why = unstorable(text)
    return None if why is None else {"field": field, "message": why, "type": UNSTORABLE}


def _invalid(request: Request, errors: list[dict[str, str]]) -> Response:
    return _problem(request, 422, "validation_failed", f"{len(errors)} field error(s)", errors=errors)


def _refused_url(request: Request) -> Response | None:
    """Text in the path or the query that PostgreSQL could not store, each named (`(path)`, or the
    query parameter's name)."""
    errors = []
    path_error = _unstorable_text("(path)", request.url.path)
    if path_error is not None:
        errors.append(path_error)
    query = request.scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True):
        error = _unstorable_text(name if unstorable(name) is None else "(query)", name + value)
        if error is not None:
            errors.append(error)
    return _invalid(request, errors) if errors else None


def _refused_body(request: Request, body: bytes) -> Response | None:
    """A JSON body whose strings PostgreSQL could not store, each named by its dotted path. A body that
    is not JSON is left to the route (which refuses it in its own words), except one not UTF-8."""
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _invalid(request, [{"field": "(body)", "message": "not UTF-8", "type": "unicode_decode"}])
    try:
        # strict=False: a raw control character in a string is named below, not a bare parse error.
        document = json.loads(text, strict=False, parse_constant=_no_constant)
    except RecursionError:
        return _invalid(request, [{"field": "(body)", "message": "nested too deeply", "type": "json_depth"}])
    except ValueError:
        return None  # not JSON: the route says so
    errors = [e for e in (_unstorable_text(f, t) for f, t in _strings(document)) if e is not None]
    return _invalid(request, errors[:50]) if errors else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _strings(document: Any) -> Iterator[tuple[str, str]]:
    """Every string of a JSON document (and every key) with the dotted path of the field it is in,
    walked without recursion (a deep document cannot exhaust the stack)."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            yield path or "(body)", value
        elif isinstance(value, dict):
            for key, item in value.items():
                field = f"{path}.{key}" if path else str(key)
                if unstorable(key) is not None:
                    yield path or "(body)", key
                    field = f"{path}.(key)" if path else "(key)"
                stack.append((field, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value))


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, handed on as one message; then the client's own (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


UNDOCUMENTED = ("/healthz", "/readyz")  # probes: no token, no problems of their own
BEARER_SCHEME = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
FASTAPI_422 = REF_PREFIX + "HTTPValidationError"


def _document_operation(method: str, operation: dict[str, Any]) -> None:
    """What an operation can refuse, from what it is. Every route but the probes takes a bearer token
    and a role (401, 403: infra.auth; a test calls each without one); a path that names something may
    name what does not exist (404); a command may also find it in the wrong state or changed meanwhile
    (409); a body may be over the size limit (413, RequestGuard); input may not be valid (422, replacing
    FastAPI's own shape, which the API never returns).
    What a route documents itself stays."""
    parameters = operation.get("parameters", [])
    command = method not in ("get", "head")
    statuses = [
        401,
        403,
        *((404,) if command or any(p["in"] == "path" for p in parameters) else ()),
        *((409,) if command else ()),
        *((413,) if "requestBody" in operation else ()),
        *((422,) if parameters or "requestBody" in operation else ()),
    ]
    responses = operation.setdefault("responses", {})
    if FASTAPI_422 in str(responses.get("422")):
        del responses["422"]
    for status, response in problem_responses(*statuses).items():
        responses.setdefault(str(status), response)
    operation.setdefault("security", [{"bearer": []}])


def _documented(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The app's OpenAPI document, with the bearer scheme (Swagger UI's Authorize button) and each
    operation's refusals as the problem details the API returns (application/problem+json)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()  # FastAPI's own, cached until the routes change
        if "securitySchemes" not in document.get("components", {}):
            for path, operations in document.get("paths", {}).items():
                if path not in UNDOCUMENTED:
                    for method, operation in operations.items():
                        _document_operation(method, operation)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            if FASTAPI_422 not in json.dumps(document["paths"]):
                schemas.pop("HTTPValidationError", None)
                schemas.pop("ValidationError", None)
            problem = ProblemDetails.model_json_schema(
                ref_template=REF_PREFIX + "{model}", mode="serialization"
            )
            schemas.update(problem.pop("$defs", {}), ProblemDetails=problem)
            document["components"]["securitySchemes"] = BEARER_SCHEME
        return document

    return openapi
