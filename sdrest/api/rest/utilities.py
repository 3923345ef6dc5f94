"""Routes for the /api utilities and image tools (being built)."""

from __future__ import annotations

from starlette.routing import BaseRoute

UTILITY_ROUTES: list[BaseRoute] = []
