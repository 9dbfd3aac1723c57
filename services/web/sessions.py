"""Server-side sessions: who is signed in, in which role, and the form token that proves a POST came
from one of our pages. The cookie carries a random id only (HttpOnly, SameSite=Lax, Secure behind TLS)."""

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

COOKIE = "leder_session"
# Writing last_seen on every request would cost a statement per page; a minute's slack is enough.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Person:
    """Someone signed in: the `sub` the services know them by, and every role they hold."""

    sub: str
    name: str
    roles: tuple[str, ...]
    organisation: str | None = None


@dataclass
class Session:
    id: str
    csrf: str
    person: Person | None = None
    role: str | None = None
    # Short-lived values between two requests: the sign-in's state and PKCE verifier, a flash message.
    scratch: dict[str, Any] = field(default_factory=dict)
    last_seen: datetime = field(default_factory=lambda: datetime.now(UTC))
    stored: bool = False
    dirty: bool = False

    @classmethod
    def new(cls) -> "Session":
        return cls(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), dirty=True)

    def sign_in(self, person: Person, role: str | None = None) -> None:
        """A new id at sign-in, so that an id planted before it is worth nothing after."""
        self.id = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(32)
        self.stored = False
        self.person = person
        self.role = role if role in person.roles else (person.roles[0] if person.roles else None)
        self.dirty = True

    def switch_role(self, role: str) -> bool:
        if self.person is None or role not in self.person.roles:
            return False
        self.role = role
        self.dirty = True
        return True

    def flash(self, message: str) -> None:
        self.scratch["flash"] = message
        self.dirty = True

    def take_flash(self) -> str | None:
        message = self.scratch.pop("flash", None)
        if message is not None:
            self.dirty = True
        return message if isinstance(message, str) else None

    def to_json(self) -> str:
        person = asdict(self.person) if self.person else None
        return json.dumps({"csrf": self.csrf, "person": person, "role": self.role, "scratch": self.scratch})


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, idle_timeout: timedelta) -> None:
        self.pool = pool
        self.idle_timeout = idle_timeout

    async def load(self, session_id: str | None) -> tuple[Session, bool]:
        """The session for this cookie, or a new one; and whether an old one had timed out."""
        if not session_id or len(session_id) > 100:
            return Session.new(), False
        row = await self.pool.fetchrow(
            "SELECT data, last_seen FROM web_sessions WHERE id_hash = $1", _hash(session_id)
        )
        if row is None:
            return Session.new(), False
        last_seen: datetime = row["last_seen"]
        if datetime.now(UTC) - last_seen > self.idle_timeout:
            await self.delete(session_id)
            return Session.new(), True
        data = json.loads(row["data"])
        person = data.get("person")
        session = Session(
            id=session_id,
            csrf=data["csrf"],
            person=Person(**{**person, "roles": tuple(person["roles"])}) if person else None,
            role=data.get("role"),
            scratch=data.get("scratch") or {},
            last_seen=last_seen,
            stored=True,
        )
        if datetime.now(UTC) - last_seen > TOUCH_EVERY:
            session.dirty = True
        return session, False

    async def save(self, session: Session) -> None:
        await self.pool.execute(
            """INSERT INTO web_sessions (id_hash, data) VALUES ($1, $2::jsonb)
               ON CONFLICT (id_hash) DO UPDATE SET data = EXCLUDED.data, last_seen = now()""",
            _hash(session.id),
            session.to_json(),
        )
        session.stored = True
        session.dirty = False

    async def delete(self, session_id: str) -> None:
        await self.pool.execute("DELETE FROM web_sessions WHERE id_hash = $1", _hash(session_id))

    async def sweep(self) -> int:
        """Forget sessions idle past the timeout (run now and then)."""
        result: str = await self.pool.execute(
            "DELETE FROM web_sessions WHERE last_seen < now() - $1::interval", self.idle_timeout
        )
        return int(result.split()[-1])
