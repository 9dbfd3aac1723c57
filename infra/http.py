"""The HTTP edge every service shares: correlation ids, request logs with the caller, problem
details, /healthz and /readyz, and the API's documentation: the OpenAPI document (with the bearer scheme
and the problem details each route can return) and the /docs and /redoc pages that show it."""

import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import uuid4

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.openapi.constants import REF_PREFIX
from fastapi.responses import JSONResponse

# FastAPIOffline: FastAPI whose /docs and /redoc pages load Swagger UI and ReDoc from the service
# itself, not from a CDN (NHS networks may reach none); it serves the assets its wheel ships.
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field

from infra.auth import TokenVerifier
from infra.logging import get_logger
from infra.problems import ProblemDetails, install_problem_handlers, problem_responses

log = get_logger("http")
CORRELATION_HEADER = "X-Correlation-ID"

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


def create_app(
    service: str,
    tokens: TokenVerifier,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    readiness: ReadinessCheck | None = None,
) -> FastAPI:
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

    @app.middleware("http")
    async def correlate_and_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        correlation_id = request.headers.get(CORRELATION_HEADER) or str(uuid4())
        request.state.correlation_id = correlation_id[:100]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service=service, correlation_id=request.state.correlation_id)
        started = time.perf_counter()
        response = await call_next(request)
        response.headers[CORRELATION_HEADER] = request.state.correlation_id
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


UNDOCUMENTED = ("/healthz", "/readyz")  # probes: no token, no problems of their own
BEARER_SCHEME = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
FASTAPI_422 = REF_PREFIX + "HTTPValidationError"


def _document_operation(method: str, operation: dict[str, Any]) -> None:
    """What an operation can refuse, from what it is. Every route but the probes takes a bearer token
    and a role (401, 403: infra.auth; a test calls each without one); a path that names something may
    name what does not exist (404); a command may also find it in the wrong state or changed meanwhile
    (409); input may not be valid (422, replacing FastAPI's own shape, which the API never returns).
    What a route documents itself stays."""
    parameters = operation.get("parameters", [])
    command = method not in ("get", "head")
    statuses = [
        401,
        403,
        *((404,) if command or any(p["in"] == "path" for p in parameters) else ()),
        *((409,) if command else ()),
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
