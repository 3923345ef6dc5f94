"""Authentication and authorization: modes, users, tokens, API keys, roles.

Only the principal contract is imported here (every family needs it, cheaply); the middleware,
the authenticator and the stores live in their own modules and are imported by the app.
"""

from sdrest.auth.principal import (
    ANONYMOUS,
    GUEST,
    GUEST_OWNER,
    OPEN_SERVER,
    ROLE_PERMISSIONS,
    SCOPE_KEY,
    InvalidCredentialsError,
    Permission,
    Principal,
    Role,
    ensure_visible,
    permissions_of,
    principal_of,
    require,
    require_identified,
)

__all__ = [
    "ANONYMOUS",
    "GUEST",
    "GUEST_OWNER",
    "OPEN_SERVER",
    "ROLE_PERMISSIONS",
    "SCOPE_KEY",
    "InvalidCredentialsError",
    "Permission",
    "Principal",
    "Role",
    "ensure_visible",
    "permissions_of",
    "principal_of",
    "require",
    "require_identified",
]
