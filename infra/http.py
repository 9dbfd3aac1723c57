"""The HTTP edge every service shares: correlation ids, request logs with the caller, problem
details, /healthz and /readyz."""

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import uuid4

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from infra.logging import get_logger
from infra.problems import install_problem_handlers

log = get_logger("http")
CORRELATION_HEADER = "X-Correlation-ID"

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]


def create_app(
    service: str,
    jwt_secret: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    readiness: ReadinessCheck | None = None,
) -> FastAPI:
    app = FastAPI(title=f"LeDeR {service} service", version="1", lifespan=lifespan)
    app.state.jwt_secret = jwt_secret
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
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        checks = await readiness() if readiness else {}
        ready = all(bool(v.get("ok")) if isinstance(v, dict) else bool(v) for v in checks.values())
        return JSONResponse(
            {"ready": ready, "service": service, "checks": checks}, status_code=200 if ready else 503
        )

    return app
