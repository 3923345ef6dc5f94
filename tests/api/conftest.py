"""Fixtures of the HTTP tests (helpers they share are in :mod:`tests.api.support`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sdrest.app import create_app
from sdrest.service import SdrestService
from tests.api.support import TestUsers


@pytest.fixture
async def api(service: SdrestService) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose requests may name their caller with ``X-Test-User``."""
    transport = httpx.ASGITransport(app=TestUsers(create_app(service)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
