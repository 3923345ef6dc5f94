"""Fixtures of the cluster tests: a private PostgreSQL server, a fresh database per test, and a
job store of either kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sdrest.jobs.store import JobStoreBase, open_job_store
from tests.cluster.postgres import PrivatePostgres, drop_database, fresh_database, server_url


@pytest.fixture(scope="session")
def postgres() -> Iterator[tuple[str, PrivatePostgres | None]]:
    """(base URL, the private server or None) for the whole session."""
    yield from server_url()


@pytest.fixture
def database_url(postgres: tuple[str, PrivatePostgres | None]) -> Iterator[str]:
    """An empty database of its own for one test (dropped after it)."""
    url = fresh_database(postgres[0])
    yield url
    drop_database(postgres[0], url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStoreBase]:
    """A job store of each kind, opened (the PostgreSQL one on a fresh database)."""
    url = request.getfixturevalue("database_url") if request.param == "postgresql" else ""
    store = open_job_store(url, tmp_path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
