"""The web application's server-side sessions on a real PostgreSQL: what the browser holds is worth
nothing without the row, a copy of the table is worth nothing as a cookie, sign-in gives a new id, and
a session idle past the timeout is gone."""

from datetime import timedelta
from pathlib import Path

from infra import db
from services.web.sessions import Person, Session, SessionStore

MIGRATIONS = Path(__file__).parents[2] / "services" / "web" / "migrations"
ALEX = Person("lac.alex", "Alex Morgan", ("lac", "qa_panel"))


async def store_on(database_url: str, idle: timedelta) -> SessionStore:
    pool = await db.create_pool(database_url)
    await db.migrate(pool, MIGRATIONS)
    return SessionStore(pool, idle)


async def test_a_signed_in_session_comes_back_by_its_cookie_and_the_table_holds_only_its_hash(
    database_url: str,
) -> None:
    store = await store_on(database_url, timedelta(minutes=30))
    try:
        session = Session.new()
        planted = session.id
        session.sign_in(ALEX, "qa_panel")
        assert session.id != planted  # an id known before sign-in is worth nothing after
        await store.save(session)

        loaded, timed_out = await store.load(session.id)
        assert not timed_out
        assert (loaded.person, loaded.role, loaded.csrf) == (ALEX, "qa_panel", session.csrf)
        rows = await store.pool.fetch("SELECT id_hash FROM web_sessions")
        assert [r["id_hash"] for r in rows] != [session.id] and len(rows) == 1
        # The hash itself, used as a cookie, finds nobody.
        stolen, _ = await store.load(rows[0]["id_hash"])
        assert stolen.person is None
    finally:
        await store.pool.close()


async def test_a_session_idle_past_the_timeout_is_gone_and_says_so(database_url: str) -> None:
    store = await store_on(database_url, timedelta(minutes=30))
    try:
        session = Session.new()
        session.sign_in(ALEX)
        await store.save(session)
        await store.pool.execute("UPDATE web_sessions SET last_seen = now() - interval '31 minutes'")

        loaded, timed_out = await store.load(session.id)
        assert timed_out and loaded.person is None
        assert await store.pool.fetchval("SELECT count(*) FROM web_sessions") == 0

        fresh = Session.new()
        fresh.sign_in(ALEX)
        await store.save(fresh)
        await store.pool.execute("UPDATE web_sessions SET last_seen = now() - interval '2 hours'")
        assert await store.sweep() == 1
    finally:
        await store.pool.close()


def test_a_person_switches_only_to_a_role_they_hold() -> None:
    session = Session.new()
    session.sign_in(ALEX)
    assert session.role == "lac"
    assert session.switch_role("qa_panel") and session.role == "qa_panel"
    assert not session.switch_role("ig_officer") and session.role == "qa_panel"
