"""The answers of the account endpoints (``/api/users``, ``/api/keys``, ``/api/auth/keys``,
``/api/auth/password``) as typed Structs. Pure: built from the store's records, never a
password hash or a key's hash."""

from __future__ import annotations

import msgspec

from sdrest.auth.users import ApiKey, User


class AccountView(msgspec.Struct, kw_only=True):
    """One account, as an admin sees it."""

    id: int
    username: str
    role: str
    local_password: bool
    """Whether the account has a password here (False: checked by PAM or a trusted proxy)."""
    created: float
    """Unix seconds."""

    @classmethod
    def of(cls, user: User) -> AccountView:
        """The view of ``user`` (its password hash stays out)."""
        return cls(
            id=user.id,
            username=user.username,
            role=user.role,
            local_password=user.password_hash is not None,
            created=user.created,
        )


class AccountList(msgspec.Struct):
    """``GET /api/users``: every account, by name."""

    users: list[AccountView]


class KeyView(msgspec.Struct, kw_only=True):
    """One API key's record: its id and first characters, never the key."""

    id: str
    username: str
    name: str
    prefix: str
    created: float
    last_used: float | None
    revoked: float | None
    active: bool

    @classmethod
    def of(cls, key: ApiKey) -> KeyView:
        """The view of ``key``."""
        return cls(
            id=key.id,
            username=key.username,
            name=key.name,
            prefix=key.prefix,
            created=key.created,
            last_used=key.last_used,
            revoked=key.revoked,
            active=key.revoked is None,
        )


class KeyList(msgspec.Struct):
    """``GET /api/keys`` and ``GET /api/auth/keys``: keys, oldest first, revoked ones too."""

    keys: list[KeyView]


class CreatedKey(msgspec.Struct, kw_only=True):
    """A new API key: the key itself is in this answer and nowhere else, ever."""

    key: str
    record: KeyView
    message: str = "Store the key now: it is shown only once"


class AccountMessage(msgspec.Struct):
    """What an account operation did, in words."""

    message: str
