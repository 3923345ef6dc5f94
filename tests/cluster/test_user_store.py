"""Accounts, API keys and revoked tokens: the same behaviour on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sdrest.auth.users import UserStore, open_user_store
from sdrest.auth.users_pg import PgUserStore, translate
from sdrest.errors import ConflictError, NotFoundError
from tests.conftest import settings_in


@pytest.fixture(params=["sqlite", "postgresql"])
def users(request: pytest.FixtureRequest, tmp_path: Path, models_dir: Path) -> UserStore:
    url = request.getfixturevalue("database_url") if request.param == "postgresql" else None
    store = open_user_store(settings_in(tmp_path, models_dir, database_url=url))
    assert isinstance(store, PgUserStore) == (url is not None)
    return store


def test_accounts_keys_and_tokens(users: UserStore) -> None:
    alice = users.add_user("alice", "admin", "hash-a")
    bob = users.add_user("bob", "user", None)
    assert alice.id != bob.id and users.count_users() == 2
    with pytest.raises(ConflictError):
        users.add_user("alice", "user", None)
    assert users.get_user_by_id(alice.id) == alice
    assert [u.username for u in users.list_users()] == ["alice", "bob"]
    users.set_password("bob", "hash-b")
    assert users.get_user("bob").password_hash == "hash-b"  # type: ignore[union-attr]
    record, key = users.create_key("bob", "laptop")
    assert users.user_for_key(key) == users.get_user("bob")
    assert [k.id for k in users.list_keys("bob")] == [record.id]
    users.revoke_key(record.id)
    assert users.user_for_key(key) is None
    with pytest.raises(NotFoundError):
        users.revoke_key(record.id)
    users.revoke_token("jti-1", time.time() + 60)
    users.revoke_token("jti-1", time.time() + 120)  # a second logout replaces the first
    assert users.token_user(alice.id, "jti-1") is None
    assert users.token_user(alice.id, "jti-2") == alice
    users.remove_user("bob")
    assert users.list_keys() == [] and users.get_user("bob") is None  # keys go with him
    with pytest.raises(NotFoundError):
        users.remove_user("bob")


def test_sqlite_only_sql_is_translated_or_refused() -> None:
    assert translate("SELECT 1 FROM t WHERE a = ? AND b = ?") == (
        "SELECT 1 FROM t WHERE a = %s AND b = %s"
    )
    upsert = translate("INSERT OR REPLACE INTO revoked_tokens (jti, expires) VALUES (?, ?)")
    assert upsert.endswith("ON CONFLICT (jti) DO UPDATE SET expires = EXCLUDED.expires")
    assert translate("INSERT INTO users (username) VALUES (?)").endswith("RETURNING id")
    with pytest.raises(NotImplementedError):
        translate("PRAGMA foreign_keys=ON")


def test_the_account_commands_use_the_database(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sdrest.cli import main

    state = ["--data-dir", str(tmp_path), "--database-url", database_url]
    assert main(["users", "add", "carol", "--no-password", "--role", "admin", *state]) == 0
    assert main(["users", "list", "--json", *state]) == 0
    assert '"carol"' in capsys.readouterr().out
    assert PgUserStore(database_url).get_user("carol") is not None
    assert not (tmp_path / "auth.sqlite3").exists()  # nothing went to the local file
