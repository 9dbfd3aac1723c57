"""Every operation of every service's HTTP API, fuzzed from its OpenAPI document (issue 16): whatever the
request (valid-shaped or not; NUL and unpaired surrogates in text, integers past 2^63, dates in year 0
or 9999, wrong types, bodies that are not JSON; with a token of a role the route allows, or with a bad
one or none), the answer is never a 5xx; every refusal (4xx) is RFC 9457 problem details; and a refused
request writes nothing: the service's database is, table by table, what it was before.

Every answer also carries Cache-Control: no-store and X-Content-Type-Options: nosniff.

The five services run in-process against the test PostgreSQL and broker, once for the module, with a
few cases driven through them first (notified, allocated, reviewed, decided by a QA panel) so that
generated ids can name things that exist and requests reach the code that writes. Their consumers are
then stopped: nothing but the request under test writes to a database while it runs, so the before and
after comparison is exact.

Examples per operation: LEDER_FUZZ_EXAMPLES, by default 20 (the module takes about a minute on a loaded
two-core machine); LEDER_FUZZ_EXAMPLES=500 for a longer local run. Derandomized: CI meets the same
requests each run.
"""

import inspect
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote
from uuid import UUID, uuid4

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from events.topics import SERVICES
from infra import db
from infra.http import CORRELATION_HEADER
from infra.service import event_feed
from infra.settings import database_url_for
from leder.docs import _definition, openapi
from tests.integration.audit.test_audit_lifecycle import drive_a_case
from tests.integration.notification.test_case_references import person
from tests.integration.review.test_review_service import MINIMUM, post
from tests.support.notifications import NOTIFIER_ORGANISATION, notification
from tests.support.service import RunningService, running_service
from tests.support.tokens import signed
from tests.support.waiting import eventually

EXAMPLES = int(os.environ.get("LEDER_FUZZ_EXAMPLES") or 20)
PARTNER_SCHEMA = Path(__file__).parents[2] / "events" / "schemas" / "partner-notification.v1.json"
# Written by the outbox relay on its own time (how far it has published), never by a request.
NOT_WRITTEN_BY_REQUESTS = ("relay_position",)
# A review's steps, each accepted (the review service's tests'; their bodies are typed there as objects).
REVIEW_STEPS = cast(list[tuple[str, dict[str, Any]]], MINIMUM)
# The people the seeded cases name: tokens for them reach their own cases, others' do not.
SUBJECTS = ("rae", "sam", "alice", "lucy", "iggy", "gov.sam", "mallory")


# --- The operations, from each service's OpenAPI document and the roles its routes require ---------


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    spec: dict[str, Any] = field(repr=False, compare=False)
    components: dict[str, Any] = field(repr=False, compare=False)
    # The roles the route lets in (from its require_roles dependency); empty for the open probes.
    roles: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"

    @property
    def secured(self) -> bool:
        return bool(self.spec.get("security"))


def _required_roles(dependant: Dependant) -> set[str]:
    """The roles of every require_roles(...) dependency of a route, however deeply it is nested."""
    roles: set[str] = set()
    for dependency in dependant.dependencies:
        call = dependency.call
        if call is not None and call.__qualname__.startswith("require_roles."):
            roles |= set(inspect.getclosurevars(call).nonlocals["roles"])
        roles |= _required_roles(dependency)
    return roles


def _route_roles(service: str) -> dict[tuple[str, str], tuple[str, ...]]:
    out = {}
    for router in (event_feed, *_definition(service).routers):
        for route in router.routes:
            if isinstance(route, APIRoute):
                for method in route.methods or ():
                    out[(method.lower(), route.path)] = tuple(sorted(_required_roles(route.dependant)))
    return out


def operations() -> list[Operation]:
    found = []
    for service in SERVICES:
        document, roles = openapi(service), _route_roles(service)
        for path, methods in document["paths"].items():
            for method, spec in methods.items():
                found.append(
                    Operation(
                        service, method, path, spec, document["components"], roles.get((method, path), ())
                    )
                )
    return found


OPERATIONS = operations()


# --- Values: valid-shaped from a schema, or hostile -------------------------------------------------

NUL_TEXT = ["a\x00b", "\x00", "note\x00"]
# Characters PostgreSQL cannot store besides NUL: unpaired surrogates (JSON can carry them escaped).
SURROGATE_TEXT = ["\ud800", "a\udfffb"]
HUGE_INTEGERS = [2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**40, -1]
EXTREME_DATES = ["0000-01-01", "0001-01-01", "9999-12-31", "2026-02-30", "+10000-01-01", "1969-12-31"]
EXTREME_DATETIMES = [
    "0001-01-01T00:00+14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999+00:00",
    "2026-13-01T00:00Z",
]
EXTREME_PERIODS = ["0000-01", "0001-01", "9999-12", "0000-Q1", "0001-Q1", "9999-Q4"]
ODD_TEXT = ["", " ", "=cmd|' /C calc'!A0", "\u202etxt.exe", "x" * 20_000, "LDR-0000-00000", "../../etc"]
GENERIC_HOSTILE: list[Any] = [*NUL_TEXT, *ODD_TEXT, None, True, 1.5, 1e308, [], ["a\x00"], {}, {"a": "\x00"}]
# Values of some parameters by name that mean something in the seeded stack: a pattern alone (\d{4}
# for a year) mostly makes years no report covers.
REALISTIC: dict[str, list[Any]] = {
    "month": ["2026-10", "2026-11"],
    "quarter": ["2026-Q3", "2026-Q4"],
    "from": ["2026-01-01", "2026-10-01"],
    "to": ["2026-12-31", "2026-11-30"],
    "year": [2026],
}
# Text a person might type: no NUL or surrogates (those are the hostile values' job).
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


def often(
    value: st.SearchStrategy[Any], sometimes: st.SearchStrategy[Any], odds: int
) -> st.SearchStrategy[Any]:
    """`sometimes` one time in `odds`, else `value`. (Not st.integers(): it favours its bounds, which
    would make `sometimes` far likelier than said; and `value` first is what a failure shrinks to.)"""
    return st.sampled_from([True] * (odds - 1) + [False]).flatmap(lambda usual: value if usual else sometimes)


def extremes(schema: dict[str, Any]) -> list[Any]:
    """The values past the edges of what `schema` describes: integers past 2^63, dates in year 0 or
    9999, periods in years 0000, 0001 and 9999, text no database can store."""
    kinds = [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]
    found: list[Any] = []
    for kind in kinds:
        if kind.get("type") in ("integer", "number"):
            found += HUGE_INTEGERS
        if kind.get("format") == "date":
            found += EXTREME_DATES
        if kind.get("format") == "date-time":
            found += EXTREME_DATETIMES
        if "pattern" in kind:
            found += EXTREME_PERIODS
        if kind.get("type") == "string":
            found += NUL_TEXT + SURROGATE_TEXT
    return found


@dataclass
class Known:
    """Ids that exist in the seeded stack, by the name of the field or parameter that takes them
    (`case_id`: the case under review first); ids are drawn from these as well as made up."""

    named: dict[str, list[str]]

    def uuids(self, name: str | None) -> st.SearchStrategy[str]:
        every = sorted({i for ids in self.named.values() for i in ids})
        named = self.named.get((name or "").removesuffix("s"), self.named.get(name or "", every))
        return st.one_of(
            st.sampled_from(named), st.sampled_from(named), st.sampled_from(every), st.uuids().map(str)
        )


class Schemas:
    """Strategies for the values a JSON schema (OpenAPI's, or a JSON Schema document's) describes."""

    def __init__(self, root: dict[str, Any], known: Known) -> None:
        self.root, self.known = root, known

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self.root
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def maybe(self, schema: dict[str, Any], name: str | None = None) -> st.SearchStrategy[Any]:
        """Mostly a valid-shaped value, sometimes a hostile one (past the schema's edges, or of another
        type), so that one bad field among good ones reaches the code past validation of the rest."""
        return often(self.valid(schema, name), self.hostile(schema), 5)

    def hostile(self, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        edges = extremes(self.resolve(schema))
        generic = st.one_of(st.sampled_from(GENERIC_HOSTILE), TEXT.map(lambda t: t + "\x00"))
        return often(st.sampled_from(edges), generic, 3) if edges else generic

    def valid(self, schema: dict[str, Any], name: str | None = None) -> st.SearchStrategy[Any]:
        if name in REALISTIC:
            return st.one_of(st.sampled_from(REALISTIC[name]), self.valid(schema))
        schema = self.resolve(schema)
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "const" in schema:
            return st.just(schema["const"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return st.one_of([self.valid(s, name) for s in schema[key]])
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged |= self.resolve(part)
            return self.valid(merged, name)
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self.valid({**schema, "type": k}, name) for k in kind])
        if kind == "string":
            return self.string(schema, name)
        if kind == "integer":
            low, high = schema.get("minimum", -5), schema.get("maximum", 10**6)
            return st.integers(low, high)
        if kind == "number":
            return st.floats(schema.get("minimum", -1e6), schema.get("maximum", 1e6), allow_nan=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "array":
            low = schema.get("minItems", 0)
            return st.lists(
                self.maybe(schema.get("items", {}), name),
                min_size=low,
                max_size=max(low, schema.get("maxItems", 3)),
            )
        if kind == "object" or "properties" in schema:
            properties = schema.get("properties", {})
            required = set(schema.get("required", ()))
            return st.fixed_dictionaries(
                {k: self.maybe(v, k) for k, v in properties.items() if k in required},
                optional={k: self.maybe(v, k) for k, v in properties.items() if k not in required},
            )
        return st.one_of(TEXT, st.integers(), st.booleans(), st.none())

    def string(self, schema: dict[str, Any], name: str | None) -> st.SearchStrategy[str]:
        match schema.get("format"):
            case "uuid":
                return self.known.uuids(name)
            case "date":
                return st.dates(date(2015, 1, 1), date(2035, 12, 31)).map(date.isoformat)
            case "date-time":
                return st.datetimes(datetime(2015, 1, 1), datetime(2035, 12, 31), timezones=st.just(UTC)).map(
                    datetime.isoformat
                )
            case "email":
                return st.emails()
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        low = schema.get("minLength", 0)
        return st.text(
            st.characters(codec="utf-8", exclude_characters="\x00"),
            min_size=low,
            max_size=max(low, min(schema.get("maxLength", 40), 40)),
        )


def as_text(value: Any) -> str:
    """A value as it goes in a path or a query string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


# --- Requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One generated request, printed whole when a check fails."""

    method: str
    url: str
    params: list[tuple[str, str]]
    token: str  # which kind of token, in words
    headers: dict[str, str]
    body: bytes | None = None

    def describe(self) -> str:
        shown = self.body if self.body is None or len(self.body) < 600 else self.body[:600] + b"..."
        return f"{self.method.upper()} {self.url} (query {self.params!r}) token={self.token} body={shown!r}"


def _claims(sub: object, role: object, **extra: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "sub": sub, "role": role, "iss": "leder", "aud": "leder-services", "iat": now,
        "exp": now + timedelta(hours=1), **extra,
    }  # fmt: skip


def _bearer(claims: dict[str, object], secret: str | None = None) -> dict[str, str]:
    """Signed by the issuer's key (tests.support.tokens), or with `secret` as an HS256 token (refused)."""
    token = signed(claims) if secret is None else jwt.encode(claims, secret, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


BAD_TOKENS: dict[str, Callable[[], dict[str, str]]] = {
    "none": lambda: {},
    "not a bearer": lambda: {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "garbage": lambda: {"Authorization": "Bearer not.a.jwt"},
    "empty bearer": lambda: {"Authorization": "Bearer "},
    "wrong secret": lambda: _bearer(_claims("alice", "lac"), "another-secret-" + "y" * 40),
    "expired": lambda: _bearer({**_claims("alice", "lac"), "exp": datetime.now(UTC) - timedelta(minutes=5)}),
    "alg none": lambda: {"Authorization": "Bearer " + jwt.encode(_claims("alice", "lac"), "", "none")},
    "role a list": lambda: _bearer(_claims("alice", ["lac"])),
    "role an object": lambda: _bearer(_claims("alice", {"lac": True})),
    "role unknown": lambda: _bearer(_claims("alice", "superuser")),
    "sub with NUL": lambda: _bearer(_claims("ali\x00ce", "lac")),
    "sub a number": lambda: _bearer(_claims(12345, "lac")),
    "sub an object": lambda: _bearer(_claims({"id": "alice"}, "lac")),
    "organisation a list": lambda: _bearer(
        _claims("southmead", "partner_system", organisation=[NOTIFIER_ORGANISATION])
    ),
    "organisation with NUL": lambda: _bearer(
        _claims("southmead", "partner_system", organisation="South\x00mead")
    ),
    "exp in year 9999": lambda: _bearer({**_claims("alice", "lac"), "exp": 253402300799}),
    "exp past 2^63": lambda: _bearer({**_claims("alice", "lac"), "exp": 2**63}),
    "signed by a key no one trusts": lambda: {
        "Authorization": f"Bearer {signed(_claims('alice', 'lac'), Ed25519PrivateKey.generate())}"
    },
    "system role by the people key": lambda: _bearer(_claims("alice", "system")),
}


def tokens(operation: Operation, svc: RunningService) -> st.SearchStrategy[tuple[str, dict[str, str]]]:
    """Mostly a valid token of a role the route allows; else a bad token, none, or a role it refuses."""
    roles = operation.roles or ("lac",)
    # Mostly the seeded review's own reviewer (rae) or senior reviewer (sam): their tokens reach the
    # review's writes and reads; others' are refused there.
    own = {"reviewer": "rae", "senior_reviewer": "sam"}
    good = st.sampled_from(roles).flatmap(
        lambda role: often(st.just(own.get(role, "lucy")), st.sampled_from(SUBJECTS), 3).map(
            lambda sub: (f"{role} {sub}", svc.headers(role, sub))
        )
    )
    others = sorted({"lac", "reviewer", "ig_officer", "qa_panel", "governance"} - set(roles))
    refused = st.sampled_from(others).map(lambda role: (f"{role} (not allowed)", svc.headers(role, "alice")))
    bad = st.sampled_from(sorted(BAD_TOKENS)).map(lambda name: (name, BAD_TOKENS[name]()))
    return often(good, st.one_of(bad, refused) if others else bad, 4)


class Blob(bytes):
    """A large body, shown by its size when a failing example is printed."""

    def __repr__(self) -> str:
        return f"Blob({len(self)} bytes: {bytes(self[:20])!r}...)"


RAW_BODIES = [
    b"", b"{", b"[]", b"null", b'"text"', b"\x00", b'{"a": "\\u0000"}', b"\xff\xfe", b"{}" * 3,
    Blob(b'{"text": "' + b"x" * 1_100_000 + b'"}'),  # over the size limit
    Blob(b"[" * 100_000 + b"]" * 100_000),  # nested past any parser's depth
]  # fmt: skip
# A JSON body under another name: FastAPI must not parse a form (or fail parsing one) into a 500.
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]


def bodies(
    operation: Operation, schemas: Schemas, examples: Sequence[dict[str, Any]]
) -> st.SearchStrategy[bytes]:
    schema = (
        operation.spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    )
    if schema is None and operation.service == "notification" and operation.path == "/notifications":
        # The partner notification is parsed from the raw body (its schema is a document of its own).
        schema = json.loads(PARTNER_SCHEMA.read_text())
        schemas = Schemas(schema, schemas.known)
    if schema is None:
        return st.one_of(st.just(b""), st.sampled_from(RAW_BODIES))
    values: list[st.SearchStrategy[Any]] = [schemas.maybe(schema)]
    if examples:
        # A body known to be accepted, as it is or with one field changed: reaches the code past
        # validation (and, as it is, what a success writes).
        values.append(st.sampled_from(examples).flatmap(lambda body: _one_changed(body, schemas, schema)))
        values.append(st.sampled_from(examples).map(_renewed))
    encoded = st.one_of(values).map(lambda v: json.dumps(v, ensure_ascii=True).encode())
    return often(encoded, st.sampled_from(RAW_BODIES), 10)


def _renewed(body: dict[str, Any]) -> dict[str, Any]:
    """The body as it is, but a new notification rather than a re-send of one."""
    return {**body, "notification_id": str(uuid4())} if "notification_id" in body else body


def _one_changed(body: dict[str, Any], schemas: Schemas, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    leaves = list(_leaves(body))

    def change(path: tuple[str, ...], value: Any) -> dict[str, Any]:
        changed = json.loads(json.dumps(body))
        node = changed
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return _renewed(changed) if path != ("notification_id",) else changed

    # The changed field's schema is not looked up: its value is one past the edge of any schema.
    every_edge = {"type": "string", "format": "date", "anyOf": [{"type": "integer"}, {"format": "date-time"}]}
    return st.tuples(st.sampled_from(leaves), schemas.hostile(every_edge)).map(lambda pv: change(*pv))


def _leaves(body: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in body.items():
        if isinstance(value, dict) and value:
            out += _leaves(value, (*prefix, key))
        else:
            out.append((*prefix, key))
    return out


def _escaped(text: str) -> str:
    """Percent-encoded for a URL; an unpaired surrogate as the bytes a careless client would send
    (its UTF-8 form, which is no valid UTF-8), since no URL can carry the character itself."""
    return quote(text, safe="", errors="surrogatepass")


def requests(
    operation: Operation, svc: RunningService, known: Known, examples: Sequence[dict[str, Any]]
) -> st.SearchStrategy[Request]:
    schemas = Schemas({"components": operation.components}, known)
    parameters = [schemas.resolve(p) for p in operation.spec.get("parameters", [])]

    def text(parameter: dict[str, Any]) -> st.SearchStrategy[str]:
        name, schema = parameter["name"], parameter["schema"]
        return often(schemas.valid(schema, name), schemas.hostile(schema), 3).map(as_text)

    path_values = st.fixed_dictionaries({p["name"]: text(p) for p in parameters if p["in"] == "path"})
    query_values = st.fixed_dictionaries(
        {p["name"]: text(p) for p in parameters if p["in"] == "query" and p.get("required")},
        optional={p["name"]: text(p) for p in parameters if p["in"] == "query" and not p.get("required")},
    )
    has_body = operation.method != "get"

    def build(
        path: dict[str, str],
        query: dict[str, str],
        token: tuple[str, dict[str, str]],
        body: bytes | None,
        content_type: str,
    ) -> Request:
        url = operation.path
        for name, value in path.items():
            url = url.replace("{" + name + "}", _escaped(value) or "%20")
        if query:
            url += "?" + "&".join(f"{_escaped(k)}={_escaped(v)}" for k, v in sorted(query.items()))
        headers = {**token[1], CORRELATION_HEADER: f"fuzz-{uuid4()}"}
        if body is not None:
            headers["Content-Type"] = content_type
        return Request(operation.method, url, sorted(query.items()), token[0], headers, body)

    return st.builds(
        build,
        path_values,
        query_values,
        tokens(operation, svc) if operation.secured else st.just(("none", {})),
        bodies(operation, schemas, examples) if has_body else st.none(),
        often(st.just("application/json"), st.sampled_from(CONTENT_TYPES), 10),
    )


# --- The stack, seeded ------------------------------------------------------------------------------


class Stack:
    """The running services, what exists in them, and their tables. (Not a dataclass: hypothesis
    prints a failing example's arguments, and a dataclass's fields at length.)"""

    def __init__(
        self,
        services: dict[str, RunningService],
        known: Known,
        tables: dict[str, list[str]],
        examples: dict[tuple[str, str], list[dict[str, Any]]],
    ) -> None:
        self.services, self.known, self.tables, self.examples = services, known, tables, examples

    def __repr__(self) -> str:
        return f"Stack({', '.join(self.services)})"


async def _tables(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    return [r["tablename"] for r in rows if r["tablename"] not in NOT_WRITTEN_BY_REQUESTS]


async def snapshot(svc: RunningService, tables: list[str]) -> dict[str, str]:
    """Each table's rows (as text, sorted) digested, and the event store's highest sequence."""
    digests = ", ".join(
        f"(SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
        f" FROM {db_ident(name)} t) AS {db_ident(name)}"
        for name in tables
    )
    row = await svc.runtime.pool.fetchrow(
        f"SELECT (SELECT coalesce(max(source_sequence), 0) FROM events)::text AS last_sequence, {digests}"
    )
    assert row is not None
    return dict(row)


def db_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _seed(svc: dict[str, RunningService]) -> Known:
    """Cases the way the world makes them: one through QA (closed, reopenable), one being reviewed by
    rae and sam, one waiting to be allocated; an action agreed for the first."""
    n, a, r, g = svc["notification"], svc["allocation"], svc["review"], svc["governance"]
    closed = (await drive_a_case(svc))["case_id"]
    reviewers = (await a.client.get("/reviewers", headers=a.headers("lac"))).json()["reviewers"]
    by_user = {x["user_id"]: x["reviewer_id"] for x in reviewers}
    in_review, waiting = await _notify(n, a, 0), await _notify(n, a, 1)
    allocated = await a.client.post(
        f"/cases/{in_review}/allocation",
        headers=a.headers("lac"),
        json={"reviewer_id": by_user["rae"], "senior_reviewer_id": by_user["sam"]},
    )
    assert allocated.status_code == 201, allocated.text

    async def started() -> bool:
        return (await r.client.get(f"/reviews/{in_review}", headers=r.headers("lac"))).status_code == 200

    await eventually(started, timeout=60)
    for path, body in REVIEW_STEPS[:3]:
        assert (await post(r, UUID(in_review), path, body)).status_code == 201, path
    action = await g.client.post(
        "/actions",
        headers=g.headers("governance", "gov.sam"),
        json={
            "what": "Sepsis screening on admission",
            "organisation": "NBT",
            "lead": "Ward manager",
            "due_on": (date.today() + timedelta(days=90)).isoformat(),
            "case_ids": [closed],
        },
    )
    assert action.status_code == 201, action.text
    panels = (await g.client.get("/qa-panels", headers=g.headers("lac"))).json()["panels"]
    await _settled(svc)
    events = await svc["audit"].runtime.pool.fetchval(
        "SELECT array_agg(event_id) FROM (SELECT event_id FROM audit_log ORDER BY position LIMIT 20) x"
    )
    notifications = await n.runtime.pool.fetchval("SELECT array_agg(notification_id) FROM notifications")
    return Known(
        {
            "case_id": [in_review, closed, waiting],
            "reviewer_id": list(by_user.values()),
            "senior_reviewer_id": [by_user["sam"]],
            "panel_id": [p["panel_id"] for p in panels],
            "action_id": [action.json()["action_id"]],
            "notification_id": [str(i) for i in notifications],
            "event_id": [str(e) for e in events],
        }
    )


async def _notify(n: RunningService, a: RunningService, who: int) -> str:
    body = person(who)  # another person each: not a duplicate of the first case
    sent = await n.client.post("/notifications", headers=n.headers("partner_system", "southmead"), json=body)
    assert sent.status_code == 201, sent.text
    case_id = str(sent.json()["case_id"])

    async def queued() -> bool:
        waiting = (await a.client.get("/allocation-queue", headers=a.headers("lac"))).json()["cases"]
        return case_id in [c["case_id"] for c in waiting]

    await eventually(queued, timeout=60)
    return case_id


async def _settled(svc: dict[str, RunningService]) -> None:
    """Every event published and logged by the audit service: the consumers have caught up."""
    pool = svc["audit"].runtime.pool

    async def logged() -> bool:
        for source in ("notification", "allocation", "review", "governance"):
            last = await svc[source].runtime.store.last_sequence()
            if await pool.fetchval("SELECT count(*) FROM audit_log WHERE source = $1", source) < last:
                return False
        return True

    await eventually(logged, timeout=90)


@pytest.fixture(scope="module")
async def stack(pg_server_url: str, kafka_bootstrap: str) -> AsyncIterator[Stack]:
    prefix = f"t{uuid4().hex[:10]}."
    urls = {s: database_url_for(pg_server_url, f"leder_fuzz_{uuid4().hex[:12]}") for s in SERVICES}
    for url in urls.values():
        await db.ensure_database(url)
    try:
        async with AsyncExitStack() as running:
            svc = {
                s: await running.enter_async_context(
                    running_service(_definition(s), urls[s], kafka_bootstrap, prefix)
                )
                for s in SERVICES
            }
            known = await _seed(svc)
            # No consumer writes while requests are checked: each database changes only by the request.
            for service in svc.values():
                await service.runtime.broker.stop()
            tables = {s: await _tables(svc[s].runtime.pool) for s in SERVICES}
            examples: dict[tuple[str, str], list[dict[str, Any]]] = {
                ("notification", "/notifications"): [notification()],
            }
            for path, body in REVIEW_STEPS:
                examples.setdefault(("review", f"/reviews/{{case_id}}/{path}"), []).append(body)
            yield Stack(svc, known, tables, examples)
    finally:
        for url in urls.values():
            await db.drop_database(url)


def _code(response: httpx.Response) -> str:
    """A problem's code, for the statistics; empty for anything else."""
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return ""
    return str(response.json().get("code", ""))


# --- The test ---------------------------------------------------------------------------------------


async def test_a_write_to_a_review_by_a_reviewer_it_is_not_allocated_to_makes_no_key(stack: Stack) -> None:
    """What the fuzz found first: the review service made the case's data key for the text of a write
    it then refused (403 to a reviewer it is not allocated to), so a refused request wrote a row. The
    key is now made as the review starts. (Before the fuzz below, which may write to the review.)"""
    review = stack.services["review"]
    case_id = stack.known.named["case_id"][0]  # under review by rae, with no text written yet
    before = await snapshot(review, stack.tables["review"])
    refused = await review.client.post(
        f"/reviews/{case_id}/pen-portrait",
        json={"text": "who he was"},
        headers=review.headers("reviewer", "mallory"),
    )
    assert refused.status_code == 403, refused.text
    assert await snapshot(review, stack.tables["review"]) == before


@pytest.mark.parametrize("operation", OPERATIONS, ids=[o.id for o in OPERATIONS])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # The stack is the module's; the autouse function-scoped fixtures (a checkpoint log path) do not
    # change between examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_request_gets_a_5xx_and_a_refused_one_writes_nothing(
    stack: Stack, operation: Operation, data: st.DataObject
) -> None:
    if operation.secured:
        assert operation.roles, f"{operation.id}: documented as needing a token, but no require_roles found"
    svc = stack.services[operation.service]
    request = data.draw(
        requests(operation, svc, stack.known, stack.examples.get((operation.service, operation.path), [])),
        label="request",
    )
    tables = stack.tables[operation.service]
    before = await snapshot(svc, tables)
    try:
        response = await svc.client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
    except Exception as error:  # what the server would answer as a 500 (ASGITransport raises it here)
        pytest.fail(f"500 ({error!r}) for {request.describe()}")
    status = response.status_code
    # What the examples got (pytest --hypothesis-show-statistics): a run all 401s would prove little.
    event(f"{status} {_code(response)}")
    assert status < 500, f"{status} for {request.describe()}: {response.text[:500]}"
    # Any answer may hold personal or audit data, or an error about it: none is kept or sniffed.
    assert "no-store" in response.headers.get("cache-control", ""), f"cacheable: {request.describe()}"
    assert response.headers.get("x-content-type-options") == "nosniff", f"sniffable: {request.describe()}"
    if 400 <= status < 500:
        media = response.headers.get("content-type", "")
        assert media.startswith("application/problem+json"), f"{status} {media} for {request.describe()}"
        problem = response.json()
        assert problem["status"] == status and {"type", "title", "code", "detail"} <= set(problem), problem
        after = await snapshot(svc, tables)
        changed = sorted(k for k in before if before[k] != after[k])
        assert not changed, f"refused ({status} {problem['code']}) but wrote {changed}: {request.describe()}"
