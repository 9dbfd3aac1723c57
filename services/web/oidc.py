"""OpenID Connect sign-in (being written)."""

from fastapi import APIRouter

from services.web.settings import OidcSettings


def router(settings: OidcSettings, public_url: str) -> APIRouter:
    return APIRouter()
