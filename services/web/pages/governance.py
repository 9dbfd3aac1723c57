"""Pages of the governance role (being written)."""

from fastapi import APIRouter

router = APIRouter()
