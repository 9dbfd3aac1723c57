"""Pages of the Local Area Contact (LAC): today's work, the cases, the allocation queue, one case and
what can be done with it, allocation and reallocation. Each group lives in its own lac_* module."""

from fastapi import APIRouter

from services.web.pages import lac_allocation, lac_case, lac_cases, lac_home

router = APIRouter()
for pages in (lac_home, lac_cases, lac_case, lac_allocation):
    router.include_router(pages.router)
