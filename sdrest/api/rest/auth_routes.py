"""``/api/auth/*``: login, logout, validate, refresh, me.

The routes raise :class:`~sdrest.errors.SdrestError` subclasses; the ``/api`` family's renderer
shapes them. With ``--auth-mode none`` there is no authenticator: ``me`` and ``validate`` describe
the open server's caller (an admin) and ``login``/``refresh`` answer 400 ``auth_disabled``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sdrest.api.common import JSONResponse, decode_json, read_body
from sdrest.auth.principal import (
    Principal,
    permissions_of,
    principal_of,
    require_identified,
)
from sdrest.errors import AuthRequiredError, SdrestError

if TYPE_CHECKING:
    from sdrest.auth.authenticator import Authenticator

MAX_LOGIN_BODY = 64 * 1024


class AuthDisabledError(SdrestError):
    """The server runs without authentication: there is nothing to log in to (400)."""

    status = 400
    code = "auth_disabled"


class LoginBody(msgspec.Struct, kw_only=True):
    """``POST /auth/login``; no password is needed for the name a trusted X-Unix-User gives."""

    username: str
    password: str | None = None


_login_decoder = msgspec.json.Decoder(LoginBody)


def user_view(principal: Principal) -> dict[str, Any]:
    """The ``user`` object of every /auth answer."""
    return {
        "id": "" if principal.user_id is None else str(principal.user_id),
        "username": principal.username,
        "role": principal.role,
        "permissions": list(permissions_of(principal)),
        "authenticated": principal.authenticated,
    }


def _authenticator_of(request: Request) -> Authenticator | None:
    # Imported on use: with auth off the token library is never loaded.
    from sdrest.auth.authenticator import authenticator_of

    return authenticator_of(request.scope)


def _authenticator(request: Request) -> Authenticator:
    found = _authenticator_of(request)
    if found is None:
        raise AuthDisabledError("authentication is off on this server (--auth-mode none)")
    return found


def _authenticated(request: Request) -> Principal:
    """The caller if it proved who it is; guests and anonymous callers get 401."""
    principal = require_identified(request)
    if not principal.authenticated:
        raise AuthRequiredError("log in first: this endpoint needs credentials")
    return principal


async def login(request: Request) -> Response:
    """``POST /auth/login`` ``{username, password}`` -> ``{token, user, message}``."""
    authenticator = _authenticator(request)
    body = decode_json(await read_body(request, MAX_LOGIN_BODY), _login_decoder)
    unix_user = None
    if authenticator.settings.trust_unix_user_header:
        unix_user = request.headers.get("x-unix-user")
    token, claims, user = await authenticator.login(body.username, body.password, unix_user)
    principal = Principal(
        username=user.username, role=user.role, user_id=user.id, authenticated=True
    )
    return JSONResponse(
        {
            "token": token,
            "user": user_view(principal),
            "expires_at": int(claims.expires),
            "message": "Login successful",
        }
    )


async def logout(request: Request) -> Response:
    """``POST /auth/logout``: the presented login token is revoked, across restarts too."""
    authenticator = _authenticator_of(request)
    if authenticator is None:
        return JSONResponse({"message": "Logout successful (authentication is off)"})
    principal = _authenticated(request)
    if await authenticator.logout(principal):
        return JSONResponse({"message": "Logout successful"})
    return JSONResponse(
        {"message": f"Logout successful (no login token to revoke: {principal.credential})"}
    )


async def validate(request: Request) -> Response:
    """``GET /auth/validate`` -> ``{user, valid: true}``; 401 for missing or bad credentials."""
    if _authenticator_of(request) is None:
        return JSONResponse({"user": user_view(principal_of(request)), "valid": True})
    principal = _authenticated(request)
    return JSONResponse({"user": user_view(principal), "valid": True})


async def refresh(request: Request) -> Response:
    """``POST /auth/refresh`` -> ``{token, message}``: a new token for the same account."""
    authenticator = _authenticator(request)
    principal = _authenticated(request)
    token, claims = await authenticator.refresh(principal)
    return JSONResponse(
        {
            "token": token,
            "expires_at": int(claims.expires),
            "message": "Token refreshed successfully",
        }
    )


async def me(request: Request) -> Response:
    """``GET /auth/me`` -> ``{user}``; a guest (optional mode) is described as role guest."""
    return JSONResponse({"user": user_view(require_identified(request))})


AUTH_ROUTES: list[BaseRoute] = [
    Route("/auth/login", login, methods=["POST"]),
    Route("/auth/logout", logout, methods=["POST"]),
    Route("/auth/validate", validate, methods=["GET"]),
    Route("/auth/refresh", refresh, methods=["POST"]),
    Route("/auth/me", me, methods=["GET"]),
]
"""Mounted by the /api family at ``/api``."""
