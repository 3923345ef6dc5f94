"""Accounts, API keys and revoked login tokens in PostgreSQL (``--database-url``), so that every
API node of a cluster knows the same users and keys, and a logout on one node holds on all.

:class:`PgUserStore` is :class:`~sdrest.auth.users.UserStore` with another connection: every
method (today's and any added later) runs its SQL through :class:`_PgConnection`, which speaks
the few words of sqlite3's interface the store uses (``execute``, ``fetchone``, ``fetchall``,
``rowcount``, ``lastrowid``) over a psycopg connection. The store's SQL is plain SQL with ``?``
placeholders; the two SQLite-only forms it uses are translated here, and any other is refused
loudly rather than run wrong.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg

from sdrest.auth.users import UserStore
from sdrest.errors import RetryLaterError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT,
    created       DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id        TEXT PRIMARY KEY,
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name      TEXT NOT NULL DEFAULT '',
    key_hash  TEXT NOT NULL UNIQUE,
    prefix    TEXT NOT NULL,
    created   DOUBLE PRECISION NOT NULL,
    last_used DOUBLE PRECISION,
    revoked   DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti     TEXT PRIMARY KEY,
    expires DOUBLE PRECISION NOT NULL
);
"""
_SCHEMA_LOCK = 0x5D4E58
_REPLACE = re.compile(r"INSERT OR REPLACE INTO (\w+) \(([^)]*)\)(.*)", re.DOTALL)
_CONFLICT_KEYS = {"revoked_tokens": "jti"}
"""The key an ``INSERT OR REPLACE`` replaces on, per table."""


def translate(sql: str) -> str:
    """The store's SQLite SQL in PostgreSQL's words (placeholders, upserts, new ids)."""
    if "PRAGMA" in sql or "INSERT OR IGNORE" in sql:
        raise NotImplementedError(f"SQLite-only SQL: {sql}")
    replace = _REPLACE.fullmatch(sql.strip())
    if replace is not None:
        table, columns, rest = replace.groups()
        key = _CONFLICT_KEYS[table]
        names = [c.strip() for c in columns.split(",")]
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != key)
        sql = f"INSERT INTO {table} ({columns}){rest} ON CONFLICT ({key}) DO UPDATE SET {updates}"
    elif sql.lstrip().upper().startswith("INSERT INTO USERS"):
        sql += " RETURNING id"  # sqlite3's lastrowid
    return sql.replace("?", "%s")


class _PgCursor:
    """The part of ``sqlite3.Cursor`` the store reads."""

    def __init__(self, cursor: psycopg.Cursor[Any], returning: bool) -> None:
        self._cursor = cursor
        self.rowcount = cursor.rowcount
        self.lastrowid: int | None = None
        if returning:
            row = cursor.fetchone()
            self.lastrowid = int(row[0]) if row else None

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        """Every row left."""
        return self._cursor.fetchall() if self._cursor.description else []


class _PgConnection:
    """The part of ``sqlite3.Connection`` the store uses, over a psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> _PgCursor:
        """Run one statement (autocommit, as the store's sqlite3 connections do)."""
        translated = translate(sql)
        try:
            cursor = self._conn.execute(translated.encode(), args)
        except psycopg.errors.IntegrityError as exc:
            # The store catches sqlite3's error for "name taken": give it the same.
            raise sqlite3.IntegrityError(str(exc)) from exc
        return _PgCursor(cursor, translated.endswith("RETURNING id"))


class PgUserStore(UserStore):
    """Users, API keys and revoked token ids in the cluster's PostgreSQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                # Duck-typed: the store calls only what _PgConnection provides.
                yield cast(sqlite3.Connection, _PgConnection(conn))
        except psycopg.OperationalError as exc:
            raise RetryLaterError("the accounts database is unavailable", retry_after=2) from exc

    def _create(self) -> None:
        try:
            with (
                psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn,
                conn.transaction(),
            ):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(_SCHEMA.encode())
        except psycopg.OperationalError as exc:
            raise RetryLaterError("the accounts database is unavailable", retry_after=2) from exc
