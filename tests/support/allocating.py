"""Test steps through the allocation service's API that several flows share."""

from datetime import date
from typing import Any


async def allocate_to_rae_with_sam(alloc: Any, case_id: str) -> None:
    """Register Rae (reviewer) and Sam (senior reviewer), both trained today, and allocate the case."""
    ids = {}
    for name, senior in (("rae", False), ("sam", True)):
        made = await alloc.client.post(
            "/reviewers",
            headers=alloc.headers("lac"),
            json={
                "user_id": name,
                "name": name.title(),
                "organisations": ["Sirona Care"],
                "senior": senior,
                "capacity": 3,
            },
        )
        ids[name] = made.json()["reviewer_id"]
        await alloc.client.post(
            f"/reviewers/{ids[name]}/training",
            headers=alloc.headers("lac"),
            json={"completed_on": date.today().isoformat()},
        )
    allocated = await alloc.client.post(
        f"/cases/{case_id}/allocation",
        headers=alloc.headers("lac"),
        json={"reviewer_id": ids["rae"], "senior_reviewer_id": ids["sam"]},
    )
    assert allocated.status_code == 201, allocated.text
