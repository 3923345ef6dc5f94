"""Routes for /api/auth/* (login, logout, validate, refresh, me) (being built)."""

from __future__ import annotations

from starlette.routing import BaseRoute

AUTH_ROUTES: list[BaseRoute] = []
