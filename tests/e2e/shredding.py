"""Where a person could still be found after their case's keys were destroyed: every database (through
SQL, and the raw data files and WAL), every topic and dead-letter topic, every log, and every GET
any role can make. The whole-system test (test_whole_system.py) opens a case with distinctive
personal data in every field and free text, lets the retention sweep shred it, and asks here."""

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer

from infra.tokens import TokenIssuer


@dataclass
class Findings:
    """Each place a secret was found, by what was found."""

    places: dict[str, list[str]] = field(default_factory=dict)

    def look(self, where: str, data: bytes, secrets: Mapping[str, bytes]) -> None:
        for name, secret in secrets.items():
            if secret in data:
                self.places.setdefault(name, []).append(where)

    def __bool__(self) -> bool:
        return bool(self.places)


def as_bytes(strings: Iterable[str]) -> dict[str, bytes]:
    """Each string as it would sit in a file, a message or a response: UTF-8, and JSON-escaped where
    that differs (a name with an apostrophe or an accent)."""
    found: dict[str, bytes] = {}
    for s in strings:
        found[s] = s.encode()
        escaped = json.dumps(s)[1:-1].encode()
        if escaped != found[s]:
            found[s + " (JSON)"] = escaped
    return found


async def search_databases(server_url: str, secrets: Mapping[str, bytes], findings: Findings) -> None:
    """Every row of every table of every LeDeR database, as text."""
    admin = await asyncpg.connect(server_url)
    try:
        names = [
            r["datname"]
            for r in await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'leder%'")
        ]
        await admin.execute("CHECKPOINT")  # so that the raw files searched next hold what SQL shows
    finally:
        await admin.close()
    base = server_url.rsplit("/", 1)[0]
    for name in names:
        conn = await asyncpg.connect(f"{base}/{name}")
        try:
            tables = await conn.fetch(
                "SELECT schemaname, tablename FROM pg_tables"
                " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
            for t in tables:
                rows = await conn.fetch(
                    f'SELECT t::text AS row FROM "{t["schemaname"]}"."{t["tablename"]}" t'
                )
                for row in rows:
                    findings.look(f"database {name} table {t['tablename']}", row["row"].encode(), secrets)
                # bytea columns print as hex in ::text; look at them raw too
                columns = await conn.fetch(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = $1 AND table_name = $2 AND data_type = 'bytea'",
                    t["schemaname"],
                    t["tablename"],
                )
                for c in columns:
                    values = await conn.fetch(
                        f'SELECT "{c["column_name"]}" AS v FROM "{t["schemaname"]}"."{t["tablename"]}"'
                    )
                    for v in values:
                        if v["v"] is not None:
                            findings.look(
                                f"database {name} {t['tablename']}.{c['column_name']}", v["v"], secrets
                            )
        finally:
            await conn.close()


def search_files(root: Path, secrets: Mapping[str, bytes], findings: Findings, label: str) -> int:
    """Every byte of every file under `root` (a data directory with its WAL, a log folder)."""
    seen = 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            seen += len(data)
            findings.look(f"{label} {path.relative_to(root)}", data, secrets)
    return seen


async def search_topics(bootstrap: str, secrets: Mapping[str, bytes], findings: Findings) -> int:
    """Every record of every topic the broker has, dead-letter topics included, from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records = 0
    try:
        topics = sorted(await consumer.topics())
        consumer.subscribe(topics)
        idle = 0
        while idle < 10:
            batch = await consumer.getmany(timeout_ms=300)
            if not batch:
                idle += 1
                continue
            idle = 0
            for part, got in batch.items():
                for record in got:
                    records += 1
                    for blob in (
                        record.key or b"",
                        record.value or b"",
                        *(v for _, v in record.headers or ()),
                    ):
                        findings.look(f"topic {part.topic}", blob, secrets)
    finally:
        await consumer.stop()
    return records


ROLES = {
    "lac": ("lac.alex", None),
    "reviewer": ("wren", None),
    "senior_reviewer": ("sol", None),
    "qa_panel": ("qa.priya", None),
    "governance": ("gov.sam", None),
    "ig_officer": ("ig.jo", None),
}


async def search_apis(
    urls: Mapping[str, str],
    issuer: TokenIssuer,
    ids: Mapping[str, str],
    partner: tuple[str, str],
    secrets: Mapping[str, bytes],
    findings: Findings,
) -> int:
    """Every GET route of every service (from its OpenAPI document), called by every role with the case's
    ids in the path and whatever the route asks in its query: what any of them answers is searched."""
    roles = dict(ROLES) | {"partner_system": partner}
    calls = 0
    async with httpx.AsyncClient(timeout=30) as client:
        for service, url in urls.items():
            document = (await client.get(f"{url}/openapi.json")).json()
            for path, operations in document["paths"].items():
                get = operations.get("get")
                if get is None:
                    continue
                concrete = path
                for name, value in ids.items():
                    concrete = concrete.replace("{" + name + "}", value)
                if "{" in concrete:
                    continue  # an id of something this case does not have (a panel, an action)
                params = _query(get)
                for role, (sub, organisation) in roles.items():
                    token = issuer.mint(sub, role, organisation)
                    answer = await client.get(
                        url + concrete, params=params, headers={"Authorization": f"Bearer {token}"}
                    )
                    calls += 1
                    findings.look(
                        f"GET {service}{path} as {role} ({answer.status_code})", answer.content, secrets
                    )
    return calls


def _query(operation: Mapping[str, Any]) -> dict[str, str]:
    """Values for the query parameters a route requires, and the widest page of those it takes."""
    params: dict[str, str] = {}
    for p in operation.get("parameters", []):
        if p.get("in") != "query":
            continue
        name = p["name"]
        if name == "limit":
            params[name] = "1000"
        elif p.get("required"):
            params[name] = {"reason": "IG check after shredding", "as_of": "2100-01-01T00:00:00+00:00"}.get(
                name, "x"
            )
    return params


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)
