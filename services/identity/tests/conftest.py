"""Fixtures of identity's tests: one migrated database and one running app for the whole run
(every test signs up its own merchant with fresh phones), a capturing code sender, and the
:class:`identity.testing.Api` helper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from fastapi import FastAPI

from identity.main import create_app
from identity.testing import MIGRATIONS, AgeCodes, Api, CapturingSender, make_settings
from identity.verification.models import VerificationCode
from servicekit.bus.factory import InMemoryBus
from servicekit.db import Database
from servicekit.testing.plugin import CreateDatabase


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def identity_url(create_database: CreateDatabase) -> str:
    return await create_database("identity", migrations=MIGRATIONS)


@pytest.fixture(scope="session")
def sender() -> CapturingSender:
    return CapturingSender()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def identity_app(identity_url: str, sender: CapturingSender) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(identity_url), bus=InMemoryBus(), code_sender=sender)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(identity_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=identity_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://identity") as http:
        yield http


@pytest.fixture
def api(client: httpx.AsyncClient, sender: CapturingSender) -> Api:
    return Api(client, sender)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def age_codes(identity_url: str) -> AsyncIterator[AgeCodes]:
    """Moves a phone's codes two minutes into the past, so the next one is not refused by
    the one-per-minute limit."""
    database = Database(make_settings(identity_url).sqlalchemy_url, pool_size=1)

    async def age(phone: str) -> None:
        async with database.transaction() as session:
            await session.execute(
                sa.update(VerificationCode)
                .where(VerificationCode.phone == phone)
                .values(created_at=VerificationCode.created_at - timedelta(minutes=2))
            )

    yield age
    await database.dispose()
