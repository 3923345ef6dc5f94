"""``/api/auth/*`` endpoints: login, logout, validate, refresh, me; access rules and answers are
declared in :mod:`sdrest.api.rest.routes` (login is public, the others need an identified caller).

The handlers raise :class:`~sdrest.errors.SdrestError` subclasses; the ``/api`` family's renderer
shapes them. With ``--auth-mode none`` there is no authenticator: ``me`` and ``validate`` describe
the open server's caller (an admin) and ``login``/``refresh`` answer 400 ``auth_disabled``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, decode_json, read_body
from sdrest.api.rest.auth_responses import (
    LoginReply,
    LogoutReply,
    MeReply,
    TokenRefreshReply,
    TokenValidReply,
    UserView,
)
from sdrest.auth.principal import Principal, principal_of
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
    """The caller if it proved who it is (the route lets only identified callers in); guests
    get 401."""
    principal = principal_of(request)
    if not principal.authenticated:
        raise AuthRequiredError("log in first: this endpoint needs credentials")
    return principal


async def login(request: Request) -> Response:
    """Log in with ``{username, password}``; answers a login token and the user."""
    authenticator = _authenticator(request)
    body = decode_json(await read_body(request, MAX_LOGIN_BODY), _login_decoder)
    unix_user = None
    if authenticator.settings.trust_unix_user_header:
        unix_user = request.headers.get("x-unix-user")
    token, claims, user = await authenticator.login(body.username, body.password, unix_user)
    principal = Principal(
        username=user.username, role=user.role, user_id=user.id, authenticated=True
    )
    answer = LoginReply(token=token, user=UserView.of(principal), expires_at=int(claims.expires))
    return JSONResponse(answer)


async def logout(request: Request) -> Response:
    """Revoke the presented login token (across restarts too)."""
    authenticator = _authenticator_of(request)
    if authenticator is None:
        return JSONResponse(LogoutReply("Logout successful (authentication is off)"))
    principal = _authenticated(request)
    if await authenticator.logout(principal):
        return JSONResponse(LogoutReply("Logout successful"))
    return JSONResponse(
        LogoutReply(f"Logout successful (no login token to revoke: {principal.credential})")
    )


async def validate(request: Request) -> Response:
    """Check the caller's credentials: the user, ``valid: true``; 401 for bad ones."""
    if _authenticator_of(request) is None:
        return JSONResponse(TokenValidReply(user=UserView.of(principal_of(request))))
    return JSONResponse(TokenValidReply(user=UserView.of(_authenticated(request))))


async def refresh(request: Request) -> Response:
    """A new login token for the same account."""
    authenticator = _authenticator(request)
    principal = _authenticated(request)
    token, claims = await authenticator.refresh(principal)
    return JSONResponse(TokenRefreshReply(token=token, expires_at=int(claims.expires)))


async def me(request: Request) -> Response:
    """Who the caller is; a guest (optional mode) is described as role guest."""
    return JSONResponse(MeReply(UserView.of(principal_of(request))))
