"""The accounts store: users, API keys (hashed), revoked tokens, a private file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sdrest.auth.users import UserStore, check_username, hash_key, looks_like_api_key
from sdrest.errors import ConflictError, InvalidRequestError, NotFoundError


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    return UserStore(tmp_path / "data" / "auth.sqlite3")


def test_users_round_trip(store: UserStore) -> None:
    alice = store.add_user("alice", "user", "hash-a")
    root = store.add_user("root", "admin", None)
    assert store.get_user("alice") == alice
    assert store.get_user_by_id(root.id) == root
    assert [u.username for u in store.list_users()] == ["alice", "root"]
    store.set_password("alice", "hash-b")
    assert store.get_user("alice").password_hash == "hash-b"  # type: ignore[union-attr]
    store.remove_user("alice")
    assert store.get_user("alice") is None
    assert store.count_users() == 1


def test_database_is_private(store: UserStore) -> None:
    store.add_user("alice", "user", None)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_errors(store: UserStore) -> None:
    store.add_user("alice", "user", None)
    with pytest.raises(ConflictError):
        store.add_user("alice", "admin", None)
    with pytest.raises(NotFoundError):
        store.remove_user("nobody")
    with pytest.raises(NotFoundError):
        store.set_password("nobody", "x")
    with pytest.raises(NotFoundError):
        store.create_key("nobody")
    with pytest.raises(NotFoundError):
        store.revoke_key("key_nope")


@pytest.mark.parametrize("name", ["", "guest", "../etc", "a b", "x" * 65, "-dash", "null\0", "ünï"])
def test_bad_usernames(name: str) -> None:
    with pytest.raises(InvalidRequestError):
        check_username(name)


def test_ensure_user_provisions_once(store: UserStore) -> None:
    first = store.ensure_user("carol")
    assert first.role == "user" and first.password_hash is None
    assert store.ensure_user("carol") == first


def test_api_keys_are_stored_hashed(store: UserStore) -> None:
    store.add_user("alice", "user", None)
    record, key = store.create_key("alice", "laptop")
    assert looks_like_api_key(key) and key.startswith(record.prefix)
    raw = store.path.read_bytes()
    assert key.encode() not in raw and hash_key(key).encode() in raw
    owner = store.user_for_key(key)
    assert owner is not None and owner.username == "alice"
    assert store.user_for_key(key + "x") is None
    [listed] = store.list_keys("alice")
    assert listed.name == "laptop" and listed.last_used is not None
    store.revoke_key(record.id)
    assert store.user_for_key(key) is None
    assert store.list_keys()[0].revoked is not None
    with pytest.raises(NotFoundError):
        store.revoke_key(record.id)  # already revoked


def test_removing_a_user_removes_its_keys(store: UserStore) -> None:
    store.add_user("alice", "user", None)
    _, key = store.create_key("alice")
    store.remove_user("alice")
    assert store.user_for_key(key) is None
    assert store.list_keys() == []


def test_revoked_tokens(store: UserStore) -> None:
    alice = store.add_user("alice", "user", None)
    assert store.token_user(alice.id, "jti-1") == alice
    store.revoke_token("jti-1", expires=2**40)
    store.revoke_token("jti-old", expires=1.0)
    assert store.token_user(alice.id, "jti-1") is None
    assert store.token_user(alice.id, "jti-2") == alice
    assert store.token_user(alice.id + 100, "jti-2") is None
    # A reopened store (a restart) still knows; expired entries are pruned on the next revoke.
    again = UserStore(store.path)
    again.revoke_token("jti-3", expires=2**40)
    assert again.token_user(alice.id, "jti-1") is None
