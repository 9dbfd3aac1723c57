"""Pages of the lac role (being written)."""

from fastapi import APIRouter

router = APIRouter()
