"""Accounts, API keys and revoked login tokens in ``{data_dir}/auth.sqlite3``.

A separate file from the job store: it holds password hashes (so it is created 0600) and the
``sdrest users`` / ``sdrest keys`` commands edit it while a server may be running. Every call
opens its own short connection, so the store has no lifecycle to manage and any thread may use
it; the server calls it through ``asyncio.to_thread`` so the event loop never waits on disk.
API keys are stored only as SHA-256 hashes: the key itself is shown once, when created.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from sdrest.auth.principal import GUEST_OWNER
from sdrest.errors import ConflictError, InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from sdrest.settings import Settings

UserRole = Literal["user", "admin"]
KEY_PREFIX = "sdr_"
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_KEY_TOUCH_INTERVAL = 60.0
"""Seconds between last_used updates of one key: a busy client should not mean a write a call."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT,
    created       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id        TEXT PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name      TEXT NOT NULL DEFAULT '',
    key_hash  TEXT NOT NULL UNIQUE,
    prefix    TEXT NOT NULL,
    created   REAL NOT NULL,
    last_used REAL,
    revoked   REAL
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti     TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
"""


class User(msgspec.Struct, frozen=True, kw_only=True):
    """An account. ``password_hash`` is None for accounts checked elsewhere (PAM, unix)."""

    id: int
    username: str
    role: UserRole
    created: float
    password_hash: str | None = None


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key's record (never the key itself)."""

    id: str
    user_id: int
    username: str
    name: str
    prefix: str
    """The first characters of the key, so its owner can tell keys apart."""
    created: float
    last_used: float | None = None
    revoked: float | None = None


def check_username(username: str) -> str:
    """``username`` if it is an acceptable account name, else 400."""
    if not _USERNAME.fullmatch(username):
        raise InvalidRequestError(
            "a username is 1-64 letters, digits or _ . @ - (starting with a letter or digit)",
            field="username",
        )
    if username == GUEST_OWNER:
        raise InvalidRequestError(f"{GUEST_OWNER!r} is reserved for guests", field="username")
    return username


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def looks_like_api_key(value: str) -> bool:
    """Whether ``value`` has the shape of an sdrest API key."""
    return value.startswith(KEY_PREFIX) and len(value) > len(KEY_PREFIX) + 16


AUTH_DB = "auth.sqlite3"
"""The accounts database, in the data folder."""


class UserStore:
    """Users, API keys and revoked token ids, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False
        self._lock = threading.Lock()

    def _ensure_schema(self) -> None:
        """Create the tables on first use (once, whichever thread gets there first)."""
        with self._lock:
            if not self._ready:
                self._create()
                self._ready = True

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Password hashes: readable by the server's user only, from the first byte on.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        finally:
            db.close()

    # -- users ------------------------------------------------------------------------------

    def add_user(self, username: str, role: UserRole, password_hash: str | None) -> User:
        """Create an account; 409 when the name is taken."""
        check_username(username)
        now = time.time()
        with self._db() as db:
            try:
                cursor = db.execute(
                    "INSERT INTO users (username, role, password_hash, created) VALUES (?,?,?,?)",
                    (username, role, password_hash, now),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"user {username!r} already exists") from None
        assert cursor.lastrowid is not None
        return User(
            id=cursor.lastrowid,
            username=username,
            role=role,
            created=now,
            password_hash=password_hash,
        )

    def ensure_user(self, username: str) -> User:
        """The account of a user identified elsewhere (PAM, a trusted proxy), made on first use
        with the ``user`` role; an admin can create it beforehand to give it another role."""
        user = self.get_user(username)
        if user is not None:
            return user
        try:
            return self.add_user(username, "user", None)
        except ConflictError:  # made by a concurrent request
            user = self.get_user(username)
            assert user is not None
            return user

    def _user(self, where: str, value: object) -> User | None:
        with self._db() as db:
            row = db.execute(
                f"SELECT id, username, role, password_hash, created FROM users WHERE {where} = ?",
                (value,),
            ).fetchone()
        return None if row is None else _user_of(row)

    def get_user(self, username: str) -> User | None:
        """An account by name."""
        return self._user("username", username)

    def get_user_by_id(self, user_id: int) -> User | None:
        """An account by id."""
        return self._user("id", user_id)

    def list_users(self) -> list[User]:
        """Every account, by name."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, username, role, password_hash, created FROM users ORDER BY username"
            ).fetchall()
        return [_user_of(row) for row in rows]

    def remove_user(self, username: str) -> None:
        """Delete an account and its API keys; 404 when unknown. Its tokens stop working too:
        every token check looks the account up."""
        with self._db() as db:
            cursor = db.execute("DELETE FROM users WHERE username = ?", (username,))
        if cursor.rowcount == 0:
            raise NotFoundError(f"user not found: {username}")

    def set_password(self, username: str, password_hash: str | None) -> None:
        """Replace an account's password hash; 404 when unknown."""
        with self._db() as db:
            cursor = db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
            )
        if cursor.rowcount == 0:
            raise NotFoundError(f"user not found: {username}")

    def set_role(self, username: str, role: UserRole) -> None:
        """Change an account's role; 404 when unknown. Its tokens and keys carry the new role
        from their next request on (every check looks the account up)."""
        with self._db() as db:
            cursor = db.execute("UPDATE users SET role = ? WHERE username = ?", (role, username))
        if cursor.rowcount == 0:
            raise NotFoundError(f"user not found: {username}")

    def count_users(self) -> int:
        """How many accounts exist."""
        with self._db() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM users").fetchone()
        return int(count)

    # -- API keys ---------------------------------------------------------------------------

    def create_key(self, username: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key for ``username``: its record and the key itself (shown once, never stored)."""
        if len(name) > 100:
            raise InvalidRequestError("a key name has at most 100 characters", field="name")
        user = self.get_user(username)
        if user is None:
            raise NotFoundError(f"user not found: {username}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(
            id="key_" + secrets.token_hex(6),
            user_id=user.id,
            username=user.username,
            name=name,
            prefix=key[: len(KEY_PREFIX) + 6],
            created=time.time(),
        )
        with self._db() as db:
            db.execute(
                "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, created)"
                " VALUES (?,?,?,?,?,?)",
                (record.id, user.id, name, hash_key(key), record.prefix, record.created),
            )
        return record, key

    def list_keys(self, username: str | None = None) -> list[ApiKey]:
        """Keys (revoked ones included), oldest first; only ``username``'s when given."""
        query = (
            "SELECT k.id, k.user_id, u.username, k.name, k.prefix, k.created, k.last_used,"
            " k.revoked FROM api_keys k JOIN users u ON u.id = k.user_id"
        )
        args: tuple[object, ...] = ()
        if username is not None:
            query += " WHERE u.username = ?"
            args = (username,)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY k.created", args).fetchall()
        return [_key_of(row) for row in rows]

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key for good; 404 when unknown or already revoked."""
        with self._db() as db:
            cursor = db.execute(
                "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                (time.time(), key_id),
            )
        if cursor.rowcount == 0:
            raise NotFoundError(f"no active key with id {key_id}")

    def user_for_key(self, key: str) -> User | None:
        """The owner of an active key, or None."""
        now = time.time()
        with self._db() as db:
            row = db.execute(
                "SELECT u.id, u.username, u.role, u.password_hash, u.created, k.id, k.last_used"
                " FROM api_keys k JOIN users u ON u.id = k.user_id"
                " WHERE k.key_hash = ? AND k.revoked IS NULL",
                (hash_key(key),),
            ).fetchone()
            if row is None:
                return None
            if row[6] is None or now - row[6] > _KEY_TOUCH_INTERVAL:
                db.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, row[5]))
        return _user_of(row[:5])

    # -- login tokens -----------------------------------------------------------------------

    def revoke_token(self, jti: str, expires: float) -> None:
        """Remember a logged-out token until it would have expired anyway."""
        now = time.time()
        with self._db() as db:
            db.execute("DELETE FROM revoked_tokens WHERE expires < ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO revoked_tokens (jti, expires) VALUES (?, ?)",
                (jti, expires),
            )

    def token_user(self, user_id: int, jti: str) -> User | None:
        """The account a token names, unless the token was revoked or the account removed."""
        with self._db() as db:
            if db.execute("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)).fetchone():
                return None
            row = db.execute(
                "SELECT id, username, role, password_hash, created FROM users WHERE id = ?",
                (user_id,),
            ).fetchone()
        return None if row is None else _user_of(row)


def _user_of(row: Any) -> User:
    user_id, username, role, password_hash, created = row
    return User(
        id=int(user_id),
        username=str(username),
        role="admin" if role == "admin" else "user",
        password_hash=None if password_hash is None else str(password_hash),
        created=float(created),
    )


def _key_of(row: Any) -> ApiKey:
    key_id, user_id, username, name, prefix, created, last_used, revoked = row
    return ApiKey(
        id=str(key_id),
        user_id=int(user_id),
        username=str(username),
        name=str(name),
        prefix=str(prefix),
        created=float(created),
        last_used=None if last_used is None else float(last_used),
        revoked=None if revoked is None else float(revoked),
    )


def open_user_store(settings: Settings) -> UserStore:
    """The accounts store a configuration asks for: PostgreSQL with ``--database-url`` (the
    driver is imported only then: it is an optional extra), else ``auth.sqlite3`` in the data
    folder."""
    if settings.database_url:
        from sdrest.auth.users_pg import PgUserStore

        return PgUserStore(settings.database_url)
    return UserStore(settings.data_path / AUTH_DB)
