"""The server's authentication: turns credentials into a :class:`Principal`; login, logout,
refresh. Disk (SQLite), the password KDF and PAM all run in worker threads: the loop never waits.

Where passwords are checked depends on the mode:

- ``jwt``, ``api-key``, ``optional``: the local accounts made with ``sdrest users add``.
- ``pam``: system accounts, through PAM; an account row is made on first login (role ``user``).
- ``unix``: system accounts through PAM when it is installed; otherwise only a trusted proxy's
  ``X-Unix-User`` header identifies callers (and login then issues a token for that name only).

Every mode accepts every credential form (login token, API key, Basic, trusted header): the mode
decides how a password is checked, not which proof of identity counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

from sdrest.auth.credentials import Credentials
from sdrest.auth.pam import pam_for
from sdrest.auth.passwords import verify_password
from sdrest.auth.principal import (
    ANONYMOUS,
    AUTHENTICATOR_KEY,
    GUEST,
    InvalidCredentialsError,
    Principal,
    rejected,
)
from sdrest.auth.tokens import SECRET_FILE, TokenClaims, TokenIssuer
from sdrest.auth.users import User, check_username, looks_like_api_key, open_user_store
from sdrest.errors import InvalidRequestError
from sdrest.settings import Settings

logger = logging.getLogger(__name__)

_CACHE_SECONDS = 60.0
_CACHE_SIZE = 256
LOGIN_FAILED = "invalid username or password"


def _principal(user: User, credential: Any, claims: TokenClaims | None = None) -> Principal:
    return Principal(
        username=user.username,
        role=user.role,
        user_id=user.id,
        authenticated=True,
        credential=credential,
        token_id=None if claims is None else claims.jti,
        token_expires=None if claims is None else claims.expires,
    )


class Authenticator:
    """One per app: the accounts store, the token issuer and the password checks of a mode.

    ``pam_module`` stands in for python-pam's ``pam`` module (tests). Raises
    :class:`~sdrest.auth.pam.AuthSetupError` when the mode cannot work on this machine.
    """

    def __init__(self, settings: Settings, *, pam_module: Any = None) -> None:
        self.settings = settings.auth
        self.mode = settings.auth.auth_mode
        self.users = open_user_store(settings)  # PostgreSQL with --database-url
        self.tokens = TokenIssuer(
            settings.auth.jwt_secret, settings.data_path / SECRET_FILE, settings.auth.token_ttl
        )
        self.pam = pam_for(settings.auth, pam_module)
        # sha256(user, password) -> (account id, username, valid until): a Basic-auth client
        # sends its password on every call; without this each call would pay the KDF (or PAM)
        # again. forget_user() drops an account's entries when its password or role changes.
        self._checked: OrderedDict[str, tuple[int, str, float]] = OrderedDict()

    # -- identifying a request --------------------------------------------------------------

    async def identify(self, credentials: Credentials) -> Principal:
        """The principal for ``credentials`` (refused ones give a principal with a failure)."""
        kind = credentials.kind
        if kind == "none" or (kind == "foreign" and self.mode == "optional"):
            # A foreign bearer value on an optional server is a placeholder key (the OpenAI SDK
            # insists on one): it is no sdrest credential, so the caller is a guest.
            return GUEST if self.mode == "optional" else ANONYMOUS
        if kind == "malformed":
            return rejected(credentials.value)
        if kind == "foreign":
            return rejected("the bearer value is neither a login token nor an API key")
        if kind == "token":
            return await self._from_token(credentials.value)
        if kind == "api_key":
            return await self._from_key(credentials.value)
        if kind == "unix_user":
            return await self._from_unix_header(credentials.username)
        return await self._from_basic(credentials.username, credentials.password)

    async def _from_token(self, token: str) -> Principal:
        return await asyncio.to_thread(self._token_principal, token)

    def _token_principal(self, token: str) -> Principal:
        """Blocking (the secret file on first use, then SQLite): one worker-thread hop."""
        try:
            claims = self.tokens.decode(token)
        except InvalidCredentialsError as exc:
            return rejected(exc.message)
        user = self.users.token_user(claims.user_id, claims.jti)
        if user is None:
            return rejected("the token was revoked (logged out) or its account removed")
        return _principal(user, "token", claims)

    async def _from_key(self, key: str) -> Principal:
        user = await asyncio.to_thread(self.users.user_for_key, key)
        if user is None:
            return rejected("the API key is invalid or revoked")
        return _principal(user, "api_key")

    async def _from_unix_header(self, username: str) -> Principal:
        try:
            check_username(username)
        except InvalidRequestError:
            return rejected("the X-Unix-User header is not a valid username")
        user = await asyncio.to_thread(self.users.ensure_user, username)
        return _principal(user, "unix_header")

    async def _from_basic(self, username: str, password: str) -> Principal:
        if looks_like_api_key(password):
            # webuiapi and curl -u send keys this way; the name, when given, must be the owner.
            principal = await self._from_key(password)
            if principal.authenticated and username not in ("", principal.username):
                return rejected("the API key belongs to another user")
            return principal
        user = await self.check_password(username, password)
        if user is None:
            await asyncio.sleep(self.settings.auth_failure_delay)
            return rejected(LOGIN_FAILED)
        return _principal(user, "password")

    # -- passwords --------------------------------------------------------------------------

    def _cache_key(self, username: str, password: str) -> str:
        return hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()

    async def check_password(self, username: str, password: str) -> User | None:
        """The account if ``password`` is right for ``username`` in this mode, else None."""
        key = self._cache_key(username, password)
        cached = self._checked.get(key)
        if cached is not None and cached[2] > time.monotonic():
            user = await asyncio.to_thread(self.users.get_user_by_id, cached[0])
            if user is not None and user.username == username:
                return user
        user = await asyncio.to_thread(self._check_password, username, password)
        if user is not None:
            self._checked[key] = (user.id, user.username, time.monotonic() + _CACHE_SECONDS)
            while len(self._checked) > _CACHE_SIZE:
                self._checked.popitem(last=False)
        return user

    def forget_user(self, username: str) -> int:
        """Drop every remembered password check of ``username``: call it when the account's
        password, role or existence changes, so the old password stops working at once (not
        when the cache entry runs out). Returns how many entries were dropped."""
        stale = [key for key, entry in self._checked.items() if entry[1] == username]
        for key in stale:
            del self._checked[key]
        return len(stale)

    def _check_password(self, username: str, password: str) -> User | None:
        """Blocking: the KDF or PAM. Unknown names cost as much as wrong passwords."""
        if self.mode in ("pam", "unix"):
            if self.pam is None or not password:
                return None
            try:
                check_username(username)
            except InvalidRequestError:
                return None
            if not self.pam.authenticate(username, password):
                return None
            return self.users.ensure_user(username)
        user = self.users.get_user(username)
        if not verify_password(password, user.password_hash if user else None):
            return None
        return user

    # -- the /auth endpoints ----------------------------------------------------------------

    async def login(
        self, username: str, password: str | None, unix_user: str | None = None
    ) -> tuple[str, TokenClaims, User]:
        """A new token for a correct name and password; after ``auth_failure_delay``, 401.

        ``unix_user`` is the trusted ``X-Unix-User`` header (None unless the server trusts it):
        the proxy that set it vouches for that name, so no password is needed for it. This is
        how a unix server without PAM issues tokens.
        """
        user: User | None = None
        if unix_user is not None and unix_user.strip() == username:
            user = await asyncio.to_thread(self._unix_user, username)
        elif password:
            user = await self.check_password(username, password)
        else:
            await asyncio.to_thread(verify_password, "", None)  # same time as a wrong password
        if user is None:
            # One delay whatever was wrong (name, password, both): timing tells nothing.
            await asyncio.sleep(self.settings.auth_failure_delay)
            raise InvalidCredentialsError(LOGIN_FAILED)
        token, claims = await asyncio.to_thread(self.tokens.issue, user)
        logger.info("login: %s (%s)", user.username, user.role)
        return token, claims, user

    def _unix_user(self, username: str) -> User | None:
        try:
            check_username(username)
        except InvalidRequestError:
            return None
        return self.users.ensure_user(username)

    async def refresh(self, principal: Principal) -> tuple[str, TokenClaims]:
        """A new token for an authenticated caller (the old one stays valid until it expires)."""
        if principal.user_id is None:
            raise InvalidCredentialsError("no account to refresh a token for")
        user = await asyncio.to_thread(self.users.get_user_by_id, principal.user_id)
        if user is None:
            raise InvalidCredentialsError("the account no longer exists")
        return await asyncio.to_thread(self.tokens.issue, user)

    async def logout(self, principal: Principal) -> bool:
        """Revoke the login token the caller presented, for good (it survives restarts).
        False when the caller used another credential (an API key is revoked with
        ``sdrest keys revoke``; Basic has nothing to end)."""
        if principal.credential != "token" or principal.token_id is None:
            return False
        expires = principal.token_expires or time.time() + self.tokens.ttl
        await asyncio.to_thread(self.users.revoke_token, principal.token_id, expires)
        logger.info("logout: %s", principal.username)
        return True


def authenticator_of(scope: Any) -> Authenticator | None:
    """The authenticator the middleware put in an ASGI scope (None when auth is off)."""
    found = scope.get(AUTHENTICATOR_KEY)
    return found if isinstance(found, Authenticator) else None
