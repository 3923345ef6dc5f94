"""The stable-diffusion.cpp-rest family under ``/api``: one sub-application, one error shape.

Routes come from small modules (system, models, generation, queue, outputs) plus the auth and
utility route lists; every error they raise renders as ``{"error": {"message", "code",
"status_code", "request_id", "timestamp"}}`` and every response carries ``X-Request-ID``.
``/api/health`` is served by the main app before this mount (it must stay cheap and public).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from sdrest.api.rest.auth_routes import AUTH_ROUTES
from sdrest.api.rest.convert import CONVERT_ROUTES
from sdrest.api.rest.errors import RequestIdMiddleware, render_error
from sdrest.api.rest.generation import GENERATION_ROUTES
from sdrest.api.rest.models import MODEL_ROUTES
from sdrest.api.rest.outputs import OUTPUT_ROUTES
from sdrest.api.rest.queue import QUEUE_ROUTES
from sdrest.api.rest.system import SYSTEM_ROUTES, SystemState
from sdrest.api.rest.utilities import UTILITY_ROUTES
from sdrest.errors import SdrestError
from sdrest.service import SdrestService


def create_rest_app(service: SdrestService) -> Starlette:
    """The family's sub-application over the one service."""
    app = Starlette(
        routes=[
            *AUTH_ROUTES,
            *SYSTEM_ROUTES,
            *MODEL_ROUTES,
            *CONVERT_ROUTES,
            *GENERATION_ROUTES,
            *OUTPUT_ROUTES,  # before the queue routes: /queue/job/{id}/output/{name} is longer
            *QUEUE_ROUTES,
            *UTILITY_ROUTES,
        ],
        # Unexpected exceptions are not listed: RequestIdMiddleware answers them (a handler for
        # Exception would run outside the middleware, without the request id).
        exception_handlers={SdrestError: render_error, 404: render_error, 405: render_error},
        middleware=[Middleware(RequestIdMiddleware)],
    )
    app.state.service = service
    app.state.system = SystemState()
    return app
