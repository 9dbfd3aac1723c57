"""Pages of the qa role (being written)."""

from fastapi import APIRouter

router = APIRouter()
