"""RFC 9457 problem details for every error the HTTP APIs return."""

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra.auth import Forbidden, Unauthenticated
from infra.db import CONNECTION_LOST
from infra.domain import DomainError
from infra.eventstore import ConcurrencyError
from infra.logging import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    field: str = Field(description="the field, dotted (`family.consented`), or `(body)`")
    message: str
    type: str = Field(description="the rule broken, machine-readable")


class RuleViolation(BaseModel):
    code: str = Field(description="the rule broken, machine-readable")
    rule: str = Field(description="the rule, in words")
    detail: str


class ProblemDetails(BaseModel):
    """What every refusal returns (RFC 9457), as `application/problem+json`: the documentation of the
    bodies problem_response writes. The optional members appear only where they apply, never as null."""

    type: str = Field(examples=["https://leder.example.nhs.uk/problems/validation_failed"])
    title: str
    status: int
    code: str = Field(description="the rule broken or the state the thing is in, machine-readable")
    detail: str
    instance: str = Field(description="the path of the request")
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        None, description="422: each field that is not valid and why"
    )
    violations: list[RuleViolation] | SkipJsonSchema[None] = Field(
        None, description="409 from allocation: each rule of an allocation the choice breaks"
    )
    missing: list[str] | SkipJsonSchema[None] = Field(
        None, description="422 review_incomplete: what the review still needs before it can be submitted"
    )
    expected_version: int | SkipJsonSchema[None] = Field(None, description="409 concurrent_change")
    actual_version: int | SkipJsonSchema[None] = Field(None, description="409 concurrent_change")


_WHEN = {
    401: "No bearer token, or one that is not valid (`unauthenticated`)",
    403: "The caller's role may not do this (`forbidden`)",
    404: "What the path names does not exist",
    409: "It exists but is in the wrong state for this (the `code` names the state), or changed meanwhile",
    413: "The request body is over the size limit (`request_too_large`; LEDER_MAX_REQUEST_BYTES, 1 MiB by "
    "default): refused before it is read",
    422: "The request is not valid: `errors` names each field and the rule (`validation_failed`; "
    "`unstorable_text` for a NUL or a lone surrogate in any text, a number, date or period out of its "
    "bounds), or a rule of the domain refuses it",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the refusals a route can return, each documented as ProblemDetails."""
    return {
        status: {
            "description": _WHEN[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        }
        for status in statuses
    }


def documented_refusal(description: str) -> dict[str, Any]:
    """One refusal with words of the route's own, documented as ProblemDetails."""
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }


class Problem(Exception):
    """An error with a status and a machine-readable `code` (the rule broken)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


def problem_response(
    request: Request, status: int, code: str, title: str, detail: str, **extra: Any
) -> JSONResponse:
    body = {
        "type": f"https://leder.example.nhs.uk/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        errors.append(
            {"field": ".".join(loc) or "(body)", "message": str(err.get("msg")), "type": err["type"]}
        )
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc)
        return problem_response(
            request,
            422,
            "validation_failed",
            "The request is not valid",
            f"{len(errors)} field error(s)",
            errors=errors,
        )

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.code, exc.code.replace("_", " ").capitalize(), exc.detail, **exc.extra
        )

    @app.exception_handler(DomainError)
    async def rule_broken(request: Request, exc: DomainError) -> JSONResponse:
        # Every service's refusal by its domain answers here, as a Problem with the same code would.
        return problem_response(
            request,
            exc.status,
            exc.code,
            exc.code.replace("_", " ").capitalize(),
            exc.detail,
            **exc.problem_extras(),
        )

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return problem_response(request, 401, "unauthenticated", "Authentication required", str(exc))

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return problem_response(request, 403, "forbidden", "Not allowed", str(exc))

    @app.exception_handler(ConcurrencyError)
    async def conflict(request: Request, exc: ConcurrencyError) -> JSONResponse:
        return problem_response(
            request,
            409,
            "concurrent_change",
            "The case changed meanwhile",
            str(exc),
            expected_version=exc.expected,
            actual_version=exc.actual,
        )

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, asyncpg.InterfaceError) and "closed" not in str(exc):
            raise exc  # a misuse of a connection (a bug), not a lost one
        log.warning("database_unavailable", path=request.url.path, error=repr(exc))
        response = problem_response(
            request, 503, "database_unavailable", "The database is unavailable", "try again shortly"
        )
        response.headers["Retry-After"] = "1"
        return response

    # Whatever a lost database left unknown, the caller should try again shortly, which a 503 with
    # Retry-After says (a 500 would say the request itself is at fault).
    for error in CONNECTION_LOST:
        app.add_exception_handler(error, database_unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        return problem_response(request, exc.status_code, code, str(exc.detail), str(exc.detail))
