"""Pages of the ig role (being written)."""

from fastapi import APIRouter

router = APIRouter()
