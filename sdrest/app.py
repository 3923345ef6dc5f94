"""``create_app``: the Starlette application, a view over one :class:`SdrestService`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, WebSocketRoute

from sdrest import __version__
from sdrest.api.common import JSONResponse, error_status, retry_headers
from sdrest.api.observe import ObserveMiddleware
from sdrest.api.openai.routes import create_openai_app
from sdrest.api.openapi import OPENAPI_PATH, openapi_endpoint
from sdrest.api.rest.routes import create_rest_app
from sdrest.api.rest.ws import websocket_endpoint
from sdrest.api.routing import route
from sdrest.api.sdapi.routes import create_sdapi_app
from sdrest.api.sdcpp.routes import create_sdcpp_app
from sdrest.errors import SdrestError
from sdrest.metrics import Metrics, metrics_route
from sdrest.service import SdrestService
from sdrest.settings import Settings
from sdrest.web import create_ui_app

if TYPE_CHECKING:
    from sdrest.auth.authenticator import Authenticator
    from sdrest.engine.base import Engine
    from sdrest.models import ModelRegistry


class Health(msgspec.Struct):
    """``GET /api/health``."""

    status: str
    timestamp: int
    version: str
    uptime: float
    """Seconds since the service was created."""
    model_loaded: bool
    queue_length: int
    nodes: int | None = None
    """Nodes sharing the queue (``--database-url`` / ``--engine-workers``), as of the last
    heartbeat; None on a single-queue server."""
    engine_workers: int | None = None
    """Engine workers on those nodes."""


async def health(request: Request) -> Response:
    """Liveness: public and cheap (no database, no native call)."""
    service: SdrestService = request.app.state.service
    now = time.time()
    nodes = service.nodes()  # cached by the heartbeat: no database call here
    return JSONResponse(
        Health(
            status="healthy",
            timestamp=int(now),
            version=__version__,
            uptime=round(now - service.started_at, 3),
            model_loaded=service.models.last_loaded is not None,
            queue_length=len(service.queue_snapshot().queued),
            nodes=len(nodes) if nodes else None,
            engine_workers=sum(len(node.workers) for node in nodes) if nodes else None,
        )
    )


async def a1111_ping(request: Request) -> Response:
    """AUTOMATIC1111's liveness probe (A1111 clients such as SillyTavern
    call it before anything else); public like A1111's own."""
    return JSONResponse({})


async def outside_any_family(request: Request, exc: Exception) -> Response:
    """A path no family owns (or one no family's routes can match), or a refusal of a top-level
    route (``/metrics`` without the right credentials): still a JSON error."""
    status, code, message = error_status(exc)
    return JSONResponse(
        {"error": {"message": message, "code": code.upper()}},
        status_code=status,
        headers=retry_headers(exc),
    )


async def to_ui(request: Request) -> Response:
    """Opens the web UI."""
    return RedirectResponse("/ui/")


def create_app(
    config: Settings | SdrestService,
    *,
    engine: Engine | None = None,
    registry: ModelRegistry | None = None,
) -> Starlette:
    """Build the app. Given settings, the app owns a new service (with ``engine`` and
    ``registry`` when given: ``sdrest serve``'s head start) and starts/stops it with the
    lifespan; given a service, the caller owns its lifecycle (embedding).

    With an ``auth_mode`` other than none, every request passes the auth middleware, which
    identifies the caller; this raises :class:`~sdrest.auth.pam.AuthSetupError` when the mode
    cannot work here (PAM missing), so a misconfigured server fails at start-up.
    """
    owns = isinstance(config, Settings)
    if isinstance(config, Settings):
        service = SdrestService(config, engine=engine, registry=registry)
    else:
        service = config
    metrics = Metrics(service)
    routes = [
        route("/api/health", health, access="public", answer=Health),
        route("/internal/ping", a1111_ping, access="public", answer=dict[str, Any]),
        # Built on the first request, then served from app.state (a free-form document).
        route(OPENAPI_PATH, openapi_endpoint, access="public", answer=dict[str, Any]),
        metrics_route(service.settings.auth.metrics_token),
        Mount("/sdcpp/v1", app=create_sdcpp_app(service)),
        Mount("/v1", app=create_openai_app(service)),
        Mount("/sdapi/v1", app=create_sdapi_app(service)),
        Mount("/api", app=create_rest_app(service)),
        WebSocketRoute("/ws", websocket_endpoint),
        Mount("/ui", app=create_ui_app(service.settings.ui_dir or None), name="ui"),
        route("/", to_ui, access="public", status=307, media_types=()),
    ]
    # Outermost: every request gets its id, its access line and its metrics, auth included.
    middleware = [Middleware(ObserveMiddleware, routes=routes, metrics=metrics)]
    authenticator: Authenticator | None = None
    # Imported only with auth on: the token library and its crypto stack cost start-up time
    # and memory that an open local server does not need.
    if service.settings.auth.auth_mode != "none":
        # Opens nothing yet: the accounts database and the token secret are read on first use.
        from sdrest.auth.authenticator import Authenticator
        from sdrest.auth.middleware import AuthMiddleware

        authenticator = Authenticator(service.settings)
        middleware.append(Middleware(AuthMiddleware, authenticator=authenticator))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owns:
            await service.start()
        try:
            yield
        finally:
            metrics.close()
            if owns:
                await service.stop()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: outside_any_family, SdrestError: outside_any_family},
    )
    app.state.service = service
    app.state.metrics = metrics
    return app
