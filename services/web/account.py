"""Who is signed in: the start page of their role, switching role, signing out."""

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from infra.logging import get_logger
from services.web.page import SignInRequired, posted_form, render, session_of
from services.web.roles import ROLE_NAMES
from services.web.signin import home_of, safe_next

router = APIRouter()
log = get_logger("web.account")


@router.get("/")
async def start(request: Request) -> Response:
    session = session_of(request)
    if session.person is None:
        return RedirectResponse("/sign-in", status_code=303)
    return RedirectResponse(home_of(session.role), status_code=303)


@router.get("/account")
async def account(request: Request) -> Response:
    session = session_of(request)
    if session.person is None:
        raise SignInRequired()
    return render(request, "account.html", roles=[(r, ROLE_NAMES.get(r, r)) for r in session.person.roles])


@router.post("/account/role")
async def switch_role(request: Request) -> Response:
    form = await posted_form(request)
    session = session_of(request)
    if session.person is None:
        raise SignInRequired()
    role = form.get("role")
    if not session.switch_role(role):
        form.error("role", "Select one of your roles")
        roles = [(r, ROLE_NAMES.get(r, r)) for r in session.person.roles]
        return render(request, "account.html", status_code=422, roles=roles, form=form)
    log.info("role_switched", sub=session.person.sub, role=role)
    session.flash(f"You are now working as {ROLE_NAMES.get(role, role)}.")
    return RedirectResponse(safe_next(form.get("next")) or home_of(role), status_code=303)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await posted_form(request)
    session = session_of(request)
    if session.person is not None:
        log.info("signed_out", sub=session.person.sub)
    await request.app.state.sessions.delete(session.id)
    session.person = None
    session.role = None
    session.stored = True
    session.dirty = False
    response = RedirectResponse("/signed-out", status_code=303)
    response.delete_cookie("leder_session", path="/")
    return response


@router.get("/signed-out")
async def signed_out(request: Request) -> Response:
    return render(request, "signed_out.html")
