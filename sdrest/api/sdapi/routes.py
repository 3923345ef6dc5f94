"""Routes of this family (being built)."""

from __future__ import annotations

from starlette.applications import Starlette

from sdrest.service import SdrestService


def create_sdapi_app(service: SdrestService) -> Starlette:
    """The family's sub-application over the one service."""
    app = Starlette(routes=[])
    app.state.service = service
    return app
