"""What ``sdrest users …`` and ``sdrest keys …`` do (the CLI only parses and calls these).

Each function writes its report to ``out`` and returns the exit status; domain errors
(:class:`~sdrest.errors.SdrestError`: unknown user, name taken, weak password) propagate for the
CLI to print. They edit ``{data_dir}/auth.sqlite3`` directly, so they work while a server runs:
a removed user or a revoked key stops working on that server's next request.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import msgspec

from sdrest.auth.passwords import check_password_policy, hash_password
from sdrest.auth.users import AUTH_DB, UserRole, UserStore, check_username
from sdrest.errors import ConflictError, InvalidRequestError, NotFoundError

PasswordPrompt = Callable[[str], str]


def store_for(data_dir: Path) -> UserStore:
    """The accounts store of a data folder."""
    return UserStore(data_dir / AUTH_DB)


def read_new_password(stdin: TextIO, prompt: PasswordPrompt = getpass.getpass) -> str:
    """A new password: prompted twice on a terminal, else the first line of standard input
    (``echo "$PASSWORD" | sdrest users add alice``), so scripts never need a terminal."""
    if stdin.isatty():
        first = prompt("New password: ")
        if prompt("Repeat it: ") != first:
            raise InvalidRequestError("the passwords differ", field="password")
        password = first
    else:
        password = stdin.readline().rstrip("\r\n")
    check_password_policy(password)
    return password


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def users_add(
    store: UserStore,
    username: str,
    role: UserRole,
    read_password: Callable[[], str] | None,
    out: TextIO,
) -> int:
    """Create an account; without ``read_password``, one checked by PAM or a proxy only.
    The name is checked before the password is asked for."""
    check_username(username)
    if store.get_user(username) is not None:
        raise ConflictError(f"user {username!r} already exists")
    password_hash = None if read_password is None else hash_password(read_password())
    user = store.add_user(username, role, password_hash)
    out.write(f"added {user.role} {user.username} (id {user.id})\n")
    return 0


def users_list(store: UserStore, out: TextIO, *, as_json: bool = False) -> int:
    """Print the accounts (never their password hashes)."""
    users = store.list_users()
    if as_json:
        rows = [
            {
                "id": u.id,
                "username": u.username,
                "role": u.role,
                "local_password": u.password_hash is not None,
                "created": u.created,
            }
            for u in users
        ]
        out.write(msgspec.json.encode(rows).decode() + "\n")
        return 0
    out.write(f"{'ID':>4} {'USERNAME':24} {'ROLE':6} {'PASSWORD':9} CREATED\n")
    for u in users:
        local = "local" if u.password_hash is not None else "external"
        out.write(f"{u.id:>4} {u.username:24} {u.role:6} {local:9} {_when(u.created)}\n")
    return 0


def users_remove(store: UserStore, username: str, out: TextIO) -> int:
    """Delete an account and its keys; its login tokens stop working too."""
    store.remove_user(username)
    out.write(f"removed {username}\n")
    return 0


def users_passwd(
    store: UserStore, username: str, read_password: Callable[[], str], out: TextIO
) -> int:
    """Set a new password (the account must exist before the password is asked for)."""
    if store.get_user(username) is None:
        raise NotFoundError(f"user not found: {username}")
    store.set_password(username, hash_password(read_password()))
    out.write(f"password changed for {username}\n")
    return 0


def keys_create(store: UserStore, username: str, name: str, out: TextIO) -> int:
    """Create a key; the key itself is the LAST line printed (``| tail -n1`` in scripts)."""
    record, key = store.create_key(username, name)
    out.write(f"created key {record.id} for {record.username}; it is shown only once:\n")
    out.write(key + "\n")
    return 0


def keys_list(
    store: UserStore, out: TextIO, username: str | None = None, *, as_json: bool = False
) -> int:
    """Print the keys (their id and first characters, never the key)."""
    keys = store.list_keys(username)
    if as_json:
        out.write(msgspec.json.encode(keys).decode() + "\n")
        return 0
    out.write(f"{'ID':16} {'USER':16} {'NAME':16} {'PREFIX':12} {'LAST USED':16} STATE\n")
    for k in keys:
        state = "active" if k.revoked is None else f"revoked {_when(k.revoked)}"
        out.write(
            f"{k.id:16} {k.username:16} {k.name:16} {k.prefix + '…':12}"
            f" {_when(k.last_used):16} {state}\n"
        )
    return 0


def keys_revoke(store: UserStore, key_id: str, out: TextIO) -> int:
    """Revoke a key for good."""
    store.revoke_key(key_id)
    out.write(f"revoked {key_id}\n")
    return 0
