"""Who is calling: the :class:`Principal` every route reads, whichever family it belongs to.

The auth middleware (``sdrest.auth.middleware``) identifies the caller once per request and puts
the principal in the ASGI scope; routes and services only ever read it through
:func:`principal_of`. With ``--auth-mode none`` there is no middleware and every caller is the
open-server principal, which may do everything and owns jobs as ``""``.

Roles, from least to most:

- ``anonymous``: no credentials (or rejected ones) on a server that requires them. May do
  nothing; :func:`require` answers 401.
- ``guest``: no credentials on an ``optional`` server. May generate and read models; its jobs are
  owned by ``"guest"`` and are reachable by their (unguessable) id only: it cannot list jobs.
- ``user``: generates, sees and cancels its own jobs, reads models.
- ``admin``: everything, every job.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from sdrest.errors import AuthRequiredError, ForbiddenError, JobNotFoundError

Role = Literal["anonymous", "guest", "user", "admin"]
Credential = Literal["none", "token", "api_key", "password", "unix_header"]
SCOPE_KEY = "sdrest.principal"
AUTHENTICATOR_KEY = "sdrest.authenticator"
"""Scope key under which the middleware leaves the authenticator for the auth routes (here, in
this light module, so a route can tell that auth is off without importing the token stack)."""
GUEST_OWNER = "guest"
"""Owner of jobs submitted by guests; no account may take this name."""


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An identified caller. ``username`` is the job owner recorded on every job it submits."""

    username: str
    role: Role
    user_id: int | None = None
    authenticated: bool = False
    """False for the open server (auth none), guests and anonymous callers."""
    auth_failure: str | None = None
    """Set when credentials were presented but rejected: why (the message of the 401)."""
    credential: Credential = "none"
    """How the caller proved who it is."""
    token_id: str | None = None
    """The ``jti`` of the login token presented (what logout revokes)."""
    token_expires: float | None = None

    @property
    def identified(self) -> bool:
        """Signed in, a guest, or the open server: anyone but a refused or missing credential."""
        return self.auth_failure is None and self.role != "anonymous"

    @property
    def is_admin(self) -> bool:
        """Admins see and manage every job."""
        return self.role == "admin"

    def may_see(self, owner: str) -> bool:
        """A user (or the guests) see their own jobs; an admin, and the open server, see all.

        An anonymous caller sees nothing, not even jobs owned by ``""`` (made while the server
        ran without authentication).
        """
        if self.role == "anonymous":
            return False
        return self.is_admin or owner == self.username


OPEN_SERVER = Principal(username="", role="admin")
"""The caller when authentication is off: the operator runs the server for themselves."""
GUEST = Principal(username=GUEST_OWNER, role="guest")
"""A caller without credentials on an ``optional`` server."""
ANONYMOUS = Principal(username="", role="anonymous")
"""A caller without credentials on a server that requires them."""


def rejected(reason: str) -> Principal:
    """The principal of a caller whose credentials were refused (routes answer 401)."""
    return Principal(username="", role="anonymous", auth_failure=reason)


def principal_of(request: Any) -> Principal:
    """The principal of a Starlette request or websocket (``OPEN_SERVER`` without auth)."""
    principal = request.scope.get(SCOPE_KEY)
    return principal if isinstance(principal, Principal) else OPEN_SERVER


Permission = Literal[
    "generate", "jobs:own", "jobs:all", "models:read", "models:manage", "system:manage"
]
ROLE_PERMISSIONS: dict[Role, tuple[Permission, ...]] = {
    "anonymous": (),
    # Guests exist only on an "optional" server, whose point is that anyone may generate.
    # They get no "jobs:own": all guests share one owner, so a job list would show everyone's.
    "guest": ("generate", "models:read"),
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


def permissions_of(principal: Principal) -> tuple[Permission, ...]:
    """What a principal may do (the open server may do everything)."""
    return ROLE_PERMISSIONS[principal.role]


def _unidentified_error(principal: Principal) -> AuthRequiredError:
    if principal.auth_failure is not None:
        return InvalidCredentialsError(principal.auth_failure)
    return AuthRequiredError("authentication is required for this endpoint")


def require(request: Any, permission: Permission) -> Principal:
    """The caller, if it holds ``permission``; else 401 (not identified) or 403 (wrong role)."""
    principal = principal_of(request)
    if principal.auth_failure is not None:
        # Bad credentials are refused even where a guest would be let in: a client that sends
        # credentials means to be someone, and must learn that it is not.
        raise _unidentified_error(principal)
    if permission in permissions_of(principal):
        return principal
    if not principal.authenticated and principal.role in ("anonymous", "guest"):
        raise _unidentified_error(principal)
    raise ForbiddenError(f"the {principal.role} role may not do this ({permission})")


def require_identified(request: Any) -> Principal:
    """The caller unless it is anonymous or its credentials were refused (then 401).

    For endpoints any identified caller may use, guests included (polling a job by its id).
    """
    principal = principal_of(request)
    if not principal.identified:
        raise _unidentified_error(principal)
    return principal


def ensure_visible(principal: Principal, owner: str, job_id: str) -> None:
    """404, worded as for an unknown job, when ``principal`` may not see a job of ``owner``.

    Answering 404 rather than 403 tells a caller nothing about other people's jobs.
    """
    if not principal.may_see(owner):
        raise JobNotFoundError(job_id)


class InvalidCredentialsError(AuthRequiredError):
    """Credentials were sent but are wrong, expired or revoked (401)."""

    code = "invalid_credentials"
