"""Who is calling: the :class:`Principal` every route reads, whichever family it belongs to.

The auth middleware (``sdrest.auth.middleware``) identifies the caller once per request and puts
the principal in the ASGI scope; routes and services only ever read it through
:func:`principal_of`. With ``--auth-mode none`` there is no middleware and every caller is the
open-server principal, which may do everything and owns jobs as ``""``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from sdrest.errors import AuthRequiredError, ForbiddenError

Role = Literal["guest", "user", "admin"]
SCOPE_KEY = "sdrest.principal"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An identified caller. ``username`` is the job owner recorded on every job it submits."""

    username: str
    role: Role
    user_id: int | None = None
    authenticated: bool = False
    """False for the open server (auth none) and for guests (auth optional)."""
    auth_failure: str | None = None
    """Set when credentials were presented but rejected: the code families answer 401 with."""

    @property
    def is_admin(self) -> bool:
        """Admins see and manage every job."""
        return self.role == "admin"

    def may_see(self, owner: str) -> bool:
        """A user sees their own jobs; an admin, and the open server, see all."""
        return self.is_admin or owner == self.username


OPEN_SERVER = Principal(username="", role="admin")
"""The caller when authentication is off: the operator runs the server for themselves."""


def principal_of(request: Any) -> Principal:
    """The principal of a Starlette request or websocket (``OPEN_SERVER`` without auth)."""
    principal = request.scope.get(SCOPE_KEY)
    return principal if isinstance(principal, Principal) else OPEN_SERVER


Permission = Literal[
    "generate", "jobs:own", "jobs:all", "models:read", "models:manage", "system:manage"
]
ROLE_PERMISSIONS: dict[Role, tuple[Permission, ...]] = {
    "guest": (),
    "user": ("generate", "jobs:own", "models:read"),
    "admin": (
        "generate",
        "jobs:own",
        "jobs:all",
        "models:read",
        "models:manage",
        "system:manage",
    ),
}


def require(request: Any, permission: Permission) -> Principal:
    """The caller, if it holds ``permission``; else 401 (not identified) or 403 (wrong role)."""
    principal = principal_of(request)
    if permission in permissions_of(principal):
        return principal
    if principal.auth_failure is not None:
        raise InvalidCredentialsError(principal.auth_failure)
    if not principal.authenticated:
        raise AuthRequiredError("authentication is required for this endpoint")
    raise ForbiddenError(f"the {principal.role} role may not do this ({permission})")


def permissions_of(principal: Principal) -> tuple[Permission, ...]:
    """What a principal may do (the open server may do everything)."""
    return ROLE_PERMISSIONS[principal.role]


class InvalidCredentialsError(AuthRequiredError):
    """Credentials were sent but are wrong, expired or revoked (401)."""

    code = "invalid_credentials"
