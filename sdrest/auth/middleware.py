"""The ASGI middleware that identifies every caller once, for HTTP and WebSocket alike.

It never answers a request itself: it puts a :class:`~sdrest.auth.principal.Principal` in the
scope (under ``SCOPE_KEY``) and each route decides, with ``require``, whether that caller may do
what it asks. Public routes (health, output files) simply do not ask. Refused credentials give a
principal whose ``auth_failure`` says why, so the route's family renders the 401 in its own
error shape.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from sdrest.auth.authenticator import Authenticator
from sdrest.auth.credentials import parse_credentials
from sdrest.auth.principal import AUTHENTICATOR_KEY, SCOPE_KEY


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        # A repeated credential header is ambiguous: the first one counts (as Starlette reads).
        headers.setdefault(name, raw_value.decode("latin-1"))
    return headers


def _query_token(scope: Scope) -> str | None:
    raw = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(raw).get("token")
    return values[0] if values else None


class AuthMiddleware:
    """Pure ASGI middleware, installed as ``Middleware(AuthMiddleware, authenticator=...)``."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Identify http and websocket callers; pass everything else (lifespan) through."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        credentials = parse_credentials(
            _headers(scope),
            _query_token(scope) if websocket else None,
            websocket=websocket,
            trust_unix_user_header=self.authenticator.settings.trust_unix_user_header,
        )
        principal = await self.authenticator.identify(credentials)
        scope = dict(scope)
        scope[SCOPE_KEY] = principal
        scope[AUTHENTICATOR_KEY] = self.authenticator
        await self.app(scope, receive, send)
