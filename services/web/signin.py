"""Sign-in. Production: OpenID Connect with the ICB's identity provider (services.web.oidc). Under
`leder up` only (LEDER_WEB_DEV_SIGNIN=1): a page that lists the people the system knows, to be any of
them; every page then says so."""

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from infra.logging import get_logger
from services.web.backend import ApiError
from services.web.page import backend_of, posted_form, render, session_of
from services.web.roles import HOME
from services.web.sessions import Person
from services.web.settings import WebSettings

log = get_logger("web.signin")


@dataclass(frozen=True)
class DevPerson:
    person: Person
    description: str


# The standing people of a local LeDeR programme; reviewers come from the allocation service.
STANDING = (
    DevPerson(
        Person("lac.alex", "Alex Morgan", ("lac", "qa_panel")),
        "Local Area Contact; also sits on the QA panel",
    ),
    DevPerson(Person("qa.priya", "Priya Shah", ("qa_panel",)), "QA panel member"),
    DevPerson(Person("gov.sam", "Sam Okafor", ("governance",)), "Governance Group lead"),
    DevPerson(Person("ig.jo", "Jo Williams", ("ig_officer",)), "Information governance officer"),
    DevPerson(
        Person("gp.lee", "Dr Chris Lee", ("partner_system",), "L81001"),
        "Partner staff: GP at practice L81001",
    ),
)


def safe_next(target: str | None) -> str | None:
    """Only a path on this site: never an address elsewhere (an open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def home_of(role: str | None) -> str:
    return HOME.get(role or "", "/account")


async def dev_people(request: Request) -> list[DevPerson]:
    people = list(STANDING)
    lac = STANDING[0].person
    api = backend_of(request).as_person(lac, "lac", request.state.correlation_id)
    try:
        reviewers = (await api.get("allocation", "/reviewers"))["reviewers"]
    except ApiError as exc:
        log.warning("dev_sign_in_reviewers_unavailable", error=str(exc))
        reviewers = []
    for r in reviewers:
        role = "senior_reviewer" if r.get("senior") else "reviewer"
        words = "Senior reviewer" if r.get("senior") else "Reviewer"
        employers = ", ".join(r.get("organisations") or [])
        people.append(
            DevPerson(
                Person(r["user_id"], r["name"], (role,)), f"{words}{f', {employers}' if employers else ''}"
            )
        )
    return people


def router(settings: WebSettings) -> APIRouter:
    routes = APIRouter()

    @routes.get("/sign-in")
    async def sign_in_page(request: Request, next: str | None = None) -> Response:
        session = session_of(request)
        if session.person is not None and safe_next(next):
            return RedirectResponse(safe_next(next) or "/", status_code=303)
        people = await dev_people(request) if settings.dev_sign_in else []
        return render(
            request,
            "sign_in.html",
            people=people,
            next=safe_next(next) or "",
            oidc=settings.oidc is not None,
        )

    if settings.dev_sign_in:

        @routes.post("/sign-in/dev")
        async def dev_sign_in(request: Request) -> Response:
            form = await posted_form(request)
            people = {p.person.sub: p.person for p in await dev_people(request)}
            person = people.get(form.get("person"))
            if person is None:
                form.error("person", "Select who you are")
                return render(
                    request,
                    "sign_in.html",
                    status_code=422,
                    people=await dev_people(request),
                    next=safe_next(form.get("next")) or "",
                    oidc=settings.oidc is not None,
                    form=form,
                )
            session = session_of(request)
            session.sign_in(person)
            log.info("signed_in", sub=person.sub, roles=list(person.roles), how="development")
            return RedirectResponse(safe_next(form.get("next")) or home_of(session.role), status_code=303)

    if settings.oidc is not None:
        from services.web import oidc

        routes.include_router(oidc.router(settings.oidc, settings.public_url))

    return routes
