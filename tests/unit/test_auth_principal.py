"""Roles and permissions: what require() answers for each kind of caller."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sdrest.auth import (
    ANONYMOUS,
    GUEST,
    OPEN_SERVER,
    SCOPE_KEY,
    InvalidCredentialsError,
    Principal,
    ensure_visible,
    principal_of,
    require,
    require_identified,
)
from sdrest.auth.principal import rejected
from sdrest.errors import AuthRequiredError, ForbiddenError, NotFoundError

ALICE = Principal(username="alice", role="user", user_id=1, authenticated=True)
ROOT = Principal(username="root", role="admin", user_id=2, authenticated=True)
BAD = rejected("the token has expired; log in again")


def _request(principal: Principal | None) -> SimpleNamespace:
    return SimpleNamespace(scope={} if principal is None else {SCOPE_KEY: principal})


OK, E401, BAD401, E403 = "ok", "auth_required", "invalid_credentials", "forbidden"


@pytest.mark.parametrize(
    ("principal", "permission", "expected"),
    [
        (None, "system:manage", OK),  # no middleware: the open server
        (ANONYMOUS, "generate", E401),
        (ANONYMOUS, "models:read", E401),
        (BAD, "generate", BAD401),
        (GUEST, "generate", OK),
        (GUEST, "models:read", OK),
        (GUEST, "jobs:own", E401),
        (GUEST, "models:manage", E401),
        (ALICE, "generate", OK),
        (ALICE, "jobs:own", OK),
        (ALICE, "jobs:all", E403),
        (ALICE, "models:manage", E403),
        (ALICE, "system:manage", E403),
        (ROOT, "system:manage", OK),
        (ROOT, "jobs:all", OK),
    ],
)
def test_require(principal: Principal | None, permission: str, expected: str) -> None:
    request = _request(principal)
    if expected == OK:
        assert require(request, permission) is principal_of(request)  # type: ignore[arg-type]
        return
    with pytest.raises((AuthRequiredError, ForbiddenError)) as info:
        require(request, permission)  # type: ignore[arg-type]
    assert info.value.code == expected
    assert info.value.status == (403 if expected == E403 else 401)


def test_refused_credentials_carry_their_reason() -> None:
    with pytest.raises(InvalidCredentialsError, match="expired"):
        require_identified(_request(BAD))


def test_require_identified_lets_guests_in_but_not_anonymous() -> None:
    assert require_identified(_request(GUEST)) is GUEST
    assert require_identified(_request(None)) is OPEN_SERVER
    with pytest.raises(AuthRequiredError) as info:
        require_identified(_request(ANONYMOUS))
    assert info.value.code == "auth_required"


@pytest.mark.parametrize(
    ("principal", "owner", "visible"),
    [
        (ALICE, "alice", True),
        (ALICE, "bob", False),
        (ALICE, "", False),
        (ROOT, "bob", True),
        (OPEN_SERVER, "anyone", True),
        (GUEST, "guest", True),
        (GUEST, "alice", False),
        (ANONYMOUS, "", False),  # jobs made while auth was off are not everyone's
    ],
)
def test_job_visibility(principal: Principal, owner: str, visible: bool) -> None:
    assert principal.may_see(owner) is visible
    if visible:
        ensure_visible(principal, owner, "job_1")
    else:
        with pytest.raises(NotFoundError, match="job not found: job_1"):
            ensure_visible(principal, owner, "job_1")
