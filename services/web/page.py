"""What every page handler needs: the signed-in person in a role, their API calls, the form they
posted (its CSRF token checked), and rendering with the layout's context."""

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.web.backend import Api, Backend
from services.web.forms import Form
from services.web.roles import NAVIGATION, ROLE_NAMES
from services.web.sessions import Person, Session
from services.web.templating import templates


class SignInRequired(Exception):
    """Nobody is signed in: to the sign-in page, and back here afterwards."""


class RoleForbidden(Exception):
    """Signed in, but this page is not for the role they are in."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        super().__init__(", ".join(roles))
        self.roles = roles


class CsrfFailed(Exception):
    """A POST without the form token of this session: not from one of our pages."""


def session_of(request: Request) -> Session:
    session: Session = request.state.session
    return session


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


@dataclass
class Page:
    request: Request
    session: Session
    person: Person
    role: str
    api: Api

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, status_code=status_code, **context)

    def redirect(self, url: str, flash: str | None = None) -> RedirectResponse:
        """After a successful POST: to the next page (303, so a refresh never posts again)."""
        if flash:
            self.session.flash(flash)
        return RedirectResponse(url, status_code=303)

    async def form(self) -> Form:
        return await posted_form(self.request)


def for_roles(*roles: str) -> Callable[[Request], Awaitable[Page]]:
    """A FastAPI dependency: the page, if the person is signed in and acting in one of `roles`."""

    async def dependency(request: Request) -> Page:
        session = session_of(request)
        if session.person is None or session.role is None:
            raise SignInRequired()
        if session.role not in roles:
            raise RoleForbidden(roles)
        api = backend_of(request).as_person(session.person, session.role, request.state.correlation_id)
        request.state.api = api
        return Page(request, session, session.person, session.role, api)

    return dependency


async def posted_form(request: Request) -> Form:
    data = await request.form()
    token = data.get("csrf_token")
    if not isinstance(token, str) or not hmac.compare_digest(token, session_of(request).csrf):
        raise CsrfFailed()
    return Form.of(data)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session = session_of(request)
    role = session.role if session.person else None
    base = {
        "request": request,
        "session": session,
        "person": session.person,
        "role": role,
        "role_name": ROLE_NAMES.get(role or "", ""),
        "navigation": NAVIGATION.get(role or "", []),
        "current_nav": current_item(NAVIGATION.get(role or "", []), request.url.path),
        "csrf_token": session.csrf,
        "dev_sign_in": request.app.state.settings.dev_sign_in,
        "flash": session.take_flash(),
        "path": request.url.path,
    }
    return templates.TemplateResponse(request, template, base | context, status_code=status_code)


def current_item(items: list[tuple[str, str]], path: str) -> str | None:
    """The menu item this page is under: the longest link that is the path or a folder of it."""
    under = [href for href, _ in items if path == href or path.startswith(href.rstrip("/") + "/")]
    return max(under, key=len) if under else None


def download(content: bytes, filename: str, media_type: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
