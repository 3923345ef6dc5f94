"""Authentication and authorization: modes, users, tokens, API keys, roles."""

from sdrest.auth.principal import (
    OPEN_SERVER,
    ROLE_PERMISSIONS,
    SCOPE_KEY,
    InvalidCredentialsError,
    Permission,
    Principal,
    Role,
    permissions_of,
    principal_of,
    require,
)

__all__ = [
    "OPEN_SERVER",
    "ROLE_PERMISSIONS",
    "SCOPE_KEY",
    "InvalidCredentialsError",
    "Permission",
    "Principal",
    "Role",
    "permissions_of",
    "principal_of",
    "require",
]
