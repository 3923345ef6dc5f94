"""Accounts and API keys over HTTP: what ``sdrest users …`` and ``sdrest keys …`` do, for the web
UI and for scripts.

- ``/api/users…`` and ``/api/keys…`` are for admins (the routes require ``system:manage``):
  list, add, remove, change a role, reset a password; list, create and revoke anyone's keys.
  They edit the accounts database of the data folder whatever the auth mode, so an operator can
  prepare accounts before turning authentication on, as the CLI can.
- ``/api/auth/password`` and ``/api/auth/keys…`` are a signed-in caller's own: change its
  password (the current one is asked for), list, create and revoke its own keys.

An admin cannot remove its own account or take its own admin role away: that would lock the
operator out of these very endpoints.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from sdrest.api.common import JSONResponse, decode_json, read_body, service_of
from sdrest.api.rest.auth_handlers import AuthDisabledError
from sdrest.api.rest.users_responses import (
    AccountList,
    AccountMessage,
    AccountView,
    CreatedKey,
    KeyList,
    KeyView,
)
from sdrest.auth.passwords import check_password_policy, hash_password
from sdrest.auth.principal import AUTHENTICATOR_KEY, Principal, principal_of
from sdrest.auth.users import UserStore, check_username, open_user_store
from sdrest.errors import AuthRequiredError, ConflictError, InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from sdrest.auth.authenticator import Authenticator

MAX_ACCOUNT_BODY = 16 * 1024


def _authenticator(request: Request) -> Authenticator | None:
    """The middleware's authenticator, or None when auth is off. The token stack (authlib,
    cryptography) is imported only when auth is on: it costs start-up time otherwise."""
    if AUTHENTICATOR_KEY not in request.scope:
        return None
    from sdrest.auth.authenticator import authenticator_of

    return authenticator_of(request.scope)


class NewUserBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/users``: without a password, the account is checked by PAM or a proxy."""

    username: str
    role: Literal["user", "admin"] = "user"
    password: str | None = None


class RoleBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/users/{username}/role``."""

    role: Literal["user", "admin"]


class SetPasswordBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/users/{username}/password``: an admin sets a new password."""

    password: str


class NewKeyBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/keys`` (``username`` required) and ``POST /api/auth/keys`` (the caller's)."""

    name: str = ""
    username: str | None = None


class ChangePasswordBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/auth/password``: the caller's current password, then the new one."""

    current_password: str
    new_password: str


_new_user = msgspec.json.Decoder(NewUserBody)
_role = msgspec.json.Decoder(RoleBody)
_set_password = msgspec.json.Decoder(SetPasswordBody)
_new_key = msgspec.json.Decoder(NewKeyBody)
_change_password = msgspec.json.Decoder(ChangePasswordBody)


def _store(request: Request) -> UserStore:
    """The accounts database: the authenticator's, or the configured one with auth off."""
    authenticator = _authenticator(request)
    if authenticator is not None:
        return authenticator.users
    return open_user_store(service_of(request).settings)


def _forget_password_checks(request: Request, username: str) -> None:
    """The account changed (password, role, removed): its remembered Basic-auth password checks
    go, so an old password stops working on the next request."""
    authenticator = _authenticator(request)
    if authenticator is not None:
        authenticator.forget_user(username)


def _account_of(request: Request) -> Principal:
    """The caller, who must have signed in to an account (not a guest, not the open server)."""
    if _authenticator(request) is None:
        raise AuthDisabledError("authentication is off on this server: there is no account")
    principal = principal_of(request)
    if not principal.authenticated or principal.user_id is None:
        raise AuthRequiredError("sign in first: this endpoint manages your own account")
    return principal


# -- admins: accounts -------------------------------------------------------------------------


async def list_users(request: Request) -> Response:
    """Every account, by name (never a password hash)."""
    users = await asyncio.to_thread(_store(request).list_users)
    return JSONResponse(AccountList([AccountView.of(u) for u in users]))


def _create_user(store: UserStore, body: NewUserBody) -> AccountView:
    check_username(body.username)
    if store.get_user(body.username) is not None:
        raise ConflictError(f"user {body.username!r} already exists", field="username")
    password_hash = None
    if body.password is not None:
        check_password_policy(body.password)
        password_hash = hash_password(body.password)
    return AccountView.of(store.add_user(body.username, body.role, password_hash))


async def add_user(request: Request) -> Response:
    """Create an account (201)."""
    body = decode_json(await read_body(request, MAX_ACCOUNT_BODY), _new_user)
    view = await asyncio.to_thread(_create_user, _store(request), body)
    return JSONResponse(view, status_code=201)


def _not_myself(request: Request, username: str, what: str) -> None:
    if principal_of(request).username == username:
        raise ConflictError(f"you cannot {what} your own account: ask another admin")


async def remove_user(request: Request) -> Response:
    """Delete an account and its keys; its tokens stop working on their next request."""
    username = request.path_params["username"]
    _not_myself(request, username, "remove")
    await asyncio.to_thread(_store(request).remove_user, username)
    _forget_password_checks(request, username)
    return JSONResponse(AccountMessage(f"removed {username}"))


def _change_role(store: UserStore, username: str, role: Literal["user", "admin"]) -> AccountView:
    store.set_role(username, role)
    user = store.get_user(username)
    if user is None:  # removed in between
        raise NotFoundError(f"user not found: {username}")
    return AccountView.of(user)


async def set_role(request: Request) -> Response:
    """Make an account a user or an admin (not one's own: no admin locks itself out)."""
    username = request.path_params["username"]
    body = decode_json(await read_body(request, MAX_ACCOUNT_BODY), _role)
    if body.role != "admin":
        _not_myself(request, username, "demote")
    view = await asyncio.to_thread(_change_role, _store(request), username, body.role)
    _forget_password_checks(request, username)
    return JSONResponse(view)


def _reset_password(store: UserStore, username: str, password: str) -> None:
    if store.get_user(username) is None:
        raise NotFoundError(f"user not found: {username}")
    check_password_policy(password)
    store.set_password(username, hash_password(password))


async def set_password(request: Request) -> Response:
    """Set an account's password (an admin's reset: the old one is not asked for)."""
    username = request.path_params["username"]
    body = decode_json(await read_body(request, MAX_ACCOUNT_BODY), _set_password)
    await asyncio.to_thread(_reset_password, _store(request), username, body.password)
    _forget_password_checks(request, username)
    return JSONResponse(AccountMessage(f"password changed for {username}"))


# -- admins: keys -----------------------------------------------------------------------------


async def list_keys(request: Request) -> Response:
    """Every key (``?username=`` for one account's), revoked ones included."""
    username = request.query_params.get("username") or None
    keys = await asyncio.to_thread(_store(request).list_keys, username)
    return JSONResponse(KeyList([KeyView.of(k) for k in keys]))


async def _create_key(store: UserStore, username: str, name: str) -> Response:
    record, key = await asyncio.to_thread(store.create_key, username, name)
    return JSONResponse(CreatedKey(key=key, record=KeyView.of(record)), status_code=201)


async def create_key(request: Request) -> Response:
    """A new key for ``username`` (201): the key is in this answer only."""
    body = decode_json(await read_body(request, MAX_ACCOUNT_BODY), _new_key)
    if not body.username:
        raise InvalidRequestError("name the account the key is for", field="username")
    return await _create_key(_store(request), body.username, body.name)


async def revoke_key(request: Request) -> Response:
    """Revoke any key for good."""
    key_id = request.path_params["key_id"]
    await asyncio.to_thread(_store(request).revoke_key, key_id)
    return JSONResponse(AccountMessage(f"revoked {key_id}"))


# -- a signed-in caller's own account ---------------------------------------------------------


async def my_keys(request: Request) -> Response:
    """The caller's own keys."""
    principal = _account_of(request)
    keys = await asyncio.to_thread(_store(request).list_keys, principal.username)
    return JSONResponse(KeyList([KeyView.of(k) for k in keys]))


async def create_my_key(request: Request) -> Response:
    """A new key for the caller (201)."""
    body = decode_json(await read_body(request, MAX_ACCOUNT_BODY), _new_key)
    principal = _account_of(request)
    if body.username not in (None, principal.username):
        raise InvalidRequestError("these are your own keys: leave out username", field="username")
    return await _create_key(_store(request), principal.username, body.name)


def _revoke_own(store: UserStore, username: str, key_id: str) -> None:
    if not any(k.id == key_id and k.revoked is None for k in store.list_keys(username)):
        raise NotFoundError(f"you have no active key with id {key_id}")
    store.revoke_key(key_id)


async def revoke_my_key(request: Request) -> Response:
    """Revoke one of the caller's own keys (another account's key is a 404)."""
    principal = _account_of(request)
    key_id = request.path_params["key_id"]
    await asyncio.to_thread(_revoke_own, _store(request), principal.username, key_id)
    return JSONResponse(AccountMessage(f"revoked {key_id}"))


async def change_my_password(request: Request) -> Response:
    """Change the caller's password; the current one must be right (a 400 naming
    ``current_password`` when not: a 401 would read as "signed out")."""
    # The body first: a malformed one is a 400 about the body whatever the auth mode.
    body = decode_json(await read_body(request, MAX_ACCOUNT_BODY), _change_password)
    principal = _account_of(request)
    authenticator = _authenticator(request)
    assert authenticator is not None  # _account_of checked it
    if authenticator.mode in ("pam", "unix"):
        raise InvalidRequestError(
            "passwords are the system's on this server (PAM): change it there", field="password"
        )
    check_password_policy(body.new_password)
    if await authenticator.check_password(principal.username, body.current_password) is None:
        raise InvalidRequestError("the current password is wrong", field="current_password")
    new_hash = await asyncio.to_thread(hash_password, body.new_password)
    await asyncio.to_thread(_store(request).set_password, principal.username, new_hash)
    authenticator.forget_user(principal.username)
    return JSONResponse(AccountMessage("password changed"))
