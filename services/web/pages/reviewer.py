"""Pages of the reviewer role (being written)."""

from fastapi import APIRouter

router = APIRouter()
