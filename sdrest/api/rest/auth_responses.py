"""The answers of ``/api/auth/*`` as typed Structs (field order is the wire order). Pure."""

from __future__ import annotations

import msgspec

from sdrest.auth.principal import Principal, permissions_of


class UserView(msgspec.Struct):
    """The ``user`` object of every /auth answer."""

    id: str
    """The account's id; empty for callers without an account (guests, the open server)."""
    username: str
    role: str
    permissions: list[str]
    authenticated: bool

    @classmethod
    def of(cls, principal: Principal) -> UserView:
        """The view of ``principal``."""
        return cls(
            id="" if principal.user_id is None else str(principal.user_id),
            username=principal.username,
            role=principal.role,
            permissions=list(permissions_of(principal)),
            authenticated=principal.authenticated,
        )


class LoginReply(msgspec.Struct, kw_only=True):
    """``POST /auth/login``: a login token for the account."""

    token: str
    user: UserView
    expires_at: int
    """Unix seconds."""
    message: str = "Login successful"


class LogoutReply(msgspec.Struct):
    """``POST /auth/logout``: what happened, in words."""

    message: str


class TokenValidReply(msgspec.Struct, kw_only=True):
    """``GET /auth/validate``: the caller's credentials are good."""

    user: UserView
    valid: bool = True


class TokenRefreshReply(msgspec.Struct, kw_only=True):
    """``POST /auth/refresh``: a new token for the same account."""

    token: str
    expires_at: int
    message: str = "Token refreshed successfully"


class MeReply(msgspec.Struct):
    """``GET /auth/me``: who the caller is."""

    user: UserView
