"""The web application: sessions, security headers, error pages, static assets and every role's
pages. `leder serve web` runs it; `leder up` starts it first among equals."""

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from infra import db
from infra.logging import configure_logging, get_logger
from services.web import account, signin
from services.web.backend import ApiError, Backend
from services.web.page import CsrfFailed, RoleForbidden, SignInRequired, render, session_of
from services.web.pages import governance, ig, lac, lac_reviewers, panels, partner, qa, reviewer
from services.web.sessions import COOKIE, Session, SessionStore
from services.web.settings import WebSettings

log = get_logger("web")
STATIC = Path(__file__).parent / "static"
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: WebSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("web")
        await db.ensure_database(settings.database_url)
        pool = await db.create_pool(settings.database_url)
        await db.migrate(pool, MIGRATIONS)
        app.state.sessions = SessionStore(pool, timedelta(minutes=settings.idle_timeout_minutes))
        app.state.backend = backend = Backend(settings.service_urls, settings.token_issuer)
        sweeper = asyncio.create_task(_sweep(app.state.sessions))
        log.info("service_started", port=settings.http_port, dev_sign_in=settings.dev_sign_in)
        try:
            yield
        finally:
            sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await sweeper
            await backend.client.aclose()
            await pool.close()

    # No /docs here: the pages are the interface; each service documents its own API.
    app = FastAPI(title="LeDeR workspace", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.mount("/assets", StaticFiles(directory=STATIC / "nhsuk" / "assets"), name="assets")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def sessions_and_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Logged: printable ASCII only (anything else dropped), at most 100 characters.
        correlation_id = re.sub(r"[^\x21-\x7e]", "", request.headers.get("X-Correlation-ID") or "")[:100]
        request.state.correlation_id = correlation_id or secrets.token_hex(8)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(service="web", correlation_id=request.state.correlation_id)
        if request.url.path.startswith(("/static/", "/assets/")) or request.url.path == "/healthz":
            plain = await call_next(request)
            # Assets hold nobody's data: cached, but checked again (their ETag) before each use.
            plain.headers.setdefault("Cache-Control", "no-cache")
            _security_headers(plain, settings.secure_cookies)
            return plain
        store: SessionStore = request.app.state.sessions
        cookie = request.cookies.get(COOKIE)
        try:
            session, timed_out = await store.load(cookie)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return render_unavailable(request)
        if timed_out:
            session.flash("You were signed out because you had not done anything for a while.")
        request.state.session = session
        response = await call_next(request)
        if session.dirty or not session.stored:
            if cookie and cookie != session.id:
                await store.delete(cookie)
            if session.person is not None or session.dirty:
                await store.save(session)
                response.set_cookie(
                    COOKIE,
                    session.id,
                    httponly=True,
                    samesite="lax",
                    secure=settings.secure_cookies,
                    path="/",
                )
        _security_headers(response, settings.secure_cookies)
        api = getattr(request.state, "api", None)
        if api is not None:
            response.headers["X-Leder-API-Calls"] = str(api.calls)
        return response

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, _: SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(target)}", status_code=303)

    @app.exception_handler(RoleForbidden)
    async def forbidden(request: Request, exc: RoleForbidden) -> Response:
        session = session_of(request)
        held = [r for r in exc.roles if session.person and r in session.person.roles]
        return render(request, "errors/forbidden.html", status_code=403, switch_to=held)

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, _: CsrfFailed) -> Response:
        return render(request, "errors/expired_form.html", status_code=400)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if exc.status in (401, 403):
            return render(request, "errors/forbidden.html", status_code=403, switch_to=[], api_error=exc)
        if exc.status == 404:
            return render(request, "errors/not_found.html", status_code=404, api_error=exc)
        if exc.status >= 500:
            log.warning("service_unavailable", service=exc.service, status=exc.status, detail=exc.detail)
            return render(request, "errors/unavailable.html", status_code=503, api_error=exc)
        return render(request, "errors/refused.html", status_code=exc.status, api_error=exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return render(request, "errors/not_found.html", status_code=404)
        return render(request, "errors/refused.html", status_code=exc.status_code, message=str(exc.detail))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "web"}

    app.include_router(signin.router(settings))
    app.include_router(account.router)
    for pages in (lac, lac_reviewers, panels, reviewer, qa, governance, ig, partner):
        app.include_router(pages.router)
    return app


def render_unavailable(request: Request) -> Response:
    request.state.session = Session.new()
    return render(request, "errors/unavailable.html", status_code=503)


def _security_headers(response: Response, tls: bool) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"  # frame-ancestors' words for browsers without CSP 2
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    if tls:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"


async def _sweep(store: SessionStore) -> None:
    while True:
        await asyncio.sleep(300)
        with suppress(Exception):
            await store.sweep()
