"""pytest fixtures shared by every package's tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from servicekit.bus.memory import InMemoryBroker
from servicekit.db import Database, drop_database, ensure_database
from servicekit.migrations import upgrade_async
from servicekit.schema import install_platform_tables
from servicekit.testing.servers import Servers, run_servers

CreateDatabase = Callable[..., Awaitable[str]]


def pytest_configure(config: pytest.Config) -> None:
    # Settings default to production, whose start-up checks refuse the test doubles (sandbox
    # provider, log code sender); tests say where they run, and so do the processes they start.
    os.environ.setdefault("COUNTERTOP_ENV", "test")


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with run_servers() as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def create_database(servers: Servers) -> AsyncIterator[CreateDatabase]:
    """Factory: a fresh database for this run, optionally migrated; dropped at the end.

    ``await create_database("orders", migrations=Path(...))`` returns its asyncpg URL. With no
    migrations, the platform tables (outbox, inbox, idempotency keys) are created directly.
    """
    created: list[str] = []

    async def create(prefix: str = "test", *, migrations: Path | None = None) -> str:
        url = servers.database_url(servers.new_database_name(prefix))
        await ensure_database(url)
        created.append(url)
        if migrations is not None:
            await upgrade_async(migrations, url)
        else:
            database = Database(url, pool_size=2)
            async with database.engine.begin() as conn:
                await conn.run_sync(install_platform_tables)
            await database.dispose()
        return url

    yield create
    for url in created:
        # A leftover test database is not worth failing the run for.
        with contextlib.suppress(Exception):
            await drop_database(url)


@pytest.fixture
def memory_broker() -> InMemoryBroker:
    return InMemoryBroker()
