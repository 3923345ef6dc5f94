"""The outermost HTTP middleware: a request id, one access log line and the HTTP metrics for
every request, whichever family serves it.

The request id goes in the scope (``sdrest.logs.REQUEST_ID_KEY``, where the /api family's error
documents read it), in a context variable (every log line made while serving the request carries
it) and back to the client as ``X-Request-ID``. The route is named by its template
(``/api/queue/job/{job_id}``), never by the raw path: :func:`route_template` matches the app's
routes the way the router does, mounts included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdrest.logs import ACCESS_LOGGER, REQUEST_ID, REQUEST_ID_KEY, new_request_id
from sdrest.metrics import Metrics

access_logger = logging.getLogger(ACCESS_LOGGER)

UNMATCHED = "unmatched"
"""The route label of a request no route matches (a 404): raw paths would be unbounded."""


def route_template(routes: Sequence[BaseRoute], scope: Scope, prefix: str = "") -> str | None:
    """The path template of the route that serves ``scope``, or None (a 404), chosen as the
    router chooses: the first full match (a mount hands the request to its app's routes),
    else the first route whose path matches but not its method (the 405). A mount of a plain
    ASGI app (the static UI) is ``<mount>/{path}``."""
    partial: str | None = None
    for item in routes:
        match, child = item.matches(scope)
        if match is Match.NONE:
            continue
        path = prefix + str(getattr(item, "path", ""))
        if isinstance(item, Mount):
            if not item.routes:
                return path + "/{path}"
            return route_template(item.routes, {**scope, **child}, path)
        if match is Match.FULL:
            return path
        partial = partial or path
    return partial


class ObserveMiddleware:
    """Pure ASGI middleware, installed first (outermost) by :func:`sdrest.app.create_app`."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], metrics: Metrics) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request with its id, then log and count it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Before the app runs: the router rewrites the scope it is given (root_path...).
        route = route_template(self.routes, dict(scope)) or UNMATCHED
        request_id = new_request_id()
        scope[REQUEST_ID_KEY] = request_id
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it starts a response
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope.get("method", "")
            self.metrics.observe_http(method, route, status, seconds)
            client = scope.get("client")
            access_logger.info(
                "%s %s %d %.1fms",
                method,
                scope.get("path", ""),
                status,
                seconds * 1000,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "path": scope.get("path", ""),
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                },
            )
            REQUEST_ID.reset(token)
