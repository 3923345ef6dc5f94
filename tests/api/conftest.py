"""Fixtures of the HTTP tests (helpers they share are in :mod:`tests.api.support`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sdrest.app import create_app
from sdrest.service import SdrestService
from sdrest.settings import Settings
from tests.api.support import TestUsers, add_accounts, make_settings


@pytest.fixture
async def api(service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose requests may name their caller with ``X-Test-User``."""
    transport = httpx.ASGITransport(app=TestUsers(create_app(service)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def jwt_settings(tmp_path: Path, models_dir: Path) -> Settings:
    """Settings in ``jwt`` mode, with the test accounts of :func:`support.add_accounts`."""
    settings = make_settings(tmp_path, models_dir, "jwt")
    add_accounts(settings)
    return settings
