"""Routes for /sdapi/v1 listings, model management and extras (being built)."""

from __future__ import annotations

from starlette.routing import BaseRoute

INFO_ROUTES: list[BaseRoute] = []
