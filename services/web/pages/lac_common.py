"""What several LAC pages share: the page dependency, people's names and the services' labels."""

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Depends

from services.web.backend import Api
from services.web.page import Page, for_roles

LacPage = Annotated[Page, Depends(for_roles("lac"))]
T = TypeVar("T")


async def names(api: Api) -> dict[str, str]:
    """Registered reviewers' names by the `sub` they sign in with (allocation GET /people)."""
    found = await api.get("allocation", "/people")
    return {p["sub"]: p["name"] for p in found.get("people", [])}


async def focused_reason_labels(api: Api) -> dict[str, str]:
    """The review service's words for the focused-review reasons (review GET /vocabulary)."""
    vocabulary = await api.get("review", "/vocabulary")
    values = vocabulary.get("focused_reasons", {}).get("values", [])
    return {v["code"]: v["label"] for v in values}


async def gather(*calls: Awaitable[Any]) -> list[Any]:
    """Independent calls at once: a page waits for its slowest call, not for the sum of them."""
    return list(await asyncio.gather(*calls))


def case_path(case_id: UUID | str) -> str:
    return f"/lac/cases/{case_id}"
