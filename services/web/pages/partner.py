"""Pages of the partner role (being written)."""

from fastapi import APIRouter

router = APIRouter()
