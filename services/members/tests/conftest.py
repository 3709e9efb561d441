"""Fixtures of the members tests: one migrated database, the app on the in-memory bus, and
tokens for any merchant and scopes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from pydantic import BaseModel

import members
from contracts.envelope import EventEnvelope
from contracts.registry import make_envelope
from members.config import Settings
from members.main import create_app
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER
from servicekit.auth import (
    SigningKey,
    StaticKeySource,
    TokenVerifier,
    generate_signing_key,
    public_jwks,
)
from servicekit.bus.base import OutgoingMessage
from servicekit.bus.factory import InMemoryBus
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.tokens import bearer_headers
from servicekit.testing.wait import eventually

MIGRATIONS = Path(members.__file__).parent / "migrations"
ALL_SCOPES = frozenset({"members:write", "settings:manage", "coupons:manage"})


def bearer(
    key: SigningKey, merchant_id: uuid.UUID, scopes: frozenset[str] = ALL_SCOPES
) -> dict[str, str]:
    """An Authorization header for a staff member of ``merchant_id``."""
    return bearer_headers(key, merchant_id, scopes=scopes)


class Harness:
    def __init__(
        self, app: FastAPI, bus: InMemoryBus, client: httpx.AsyncClient, key: SigningKey
    ) -> None:
        self.app = app
        self.bus = bus
        self.client = client
        self.key = key

    def token(self, merchant_id: uuid.UUID, scopes: frozenset[str] = ALL_SCOPES) -> dict[str, str]:
        return bearer(self.key, merchant_id, scopes)

    def envelope(
        self, payload: BaseModel, merchant_id: uuid.UUID, aggregate_id: uuid.UUID
    ) -> EventEnvelope:
        return make_envelope(
            payload, producer="orders", aggregate_id=aggregate_id, merchant_id=merchant_id
        )

    async def deliver(self, envelope: EventEnvelope) -> None:
        """Put ``envelope`` on the bus (again, if it was delivered before)."""
        await self.bus.broker.append(
            [
                OutgoingMessage(
                    topic=envelope.type.rsplit(".", 1)[0],
                    key=envelope.aggregate_id.encode(),
                    value=envelope.model_dump_json().encode(),
                )
            ]
        )

    async def processed(self, envelope: EventEnvelope, consumer: str = "members.points") -> None:
        """Wait until ``consumer`` recorded ``envelope`` in its inbox."""

        async def seen() -> bool:
            async with self.app.state.database.transaction() as session:
                from sqlalchemy import text

                found = await session.scalar(
                    text("SELECT 1 FROM inbox WHERE event_id = :id AND consumer = :consumer"),
                    {"id": envelope.event_id, "consumer": consumer},
                )
                return found is not None

        await eventually(seen)

    def events(self, topic: str, member_id: uuid.UUID | str) -> list[dict[str, Any]]:
        found = []
        for message in self.bus.broker.messages(topic):
            event = json.loads(message.value)
            if event["payload"].get("member_id") == str(member_id):
                found.append(event)
        return found

    async def create_member(
        self, merchant_id: uuid.UUID, phone: str, **fields: Any
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/members", json={"phone": phone, **fields}, headers=self.token(merchant_id)
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def members_url(create_database: CreateDatabase) -> str:
    return await create_database("members", migrations=MIGRATIONS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(members_url: str) -> AsyncIterator[Harness]:
    settings = Settings(
        database_url=members_url,
        log_format="console",
        outbox_poll_interval=0.05,
        db_pool_size=5,
        import_poll_interval=0.05,
    )
    bus = InMemoryBus()
    key = generate_signing_key()
    verifier = TokenVerifier(
        StaticKeySource(public_jwks([key])), issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE
    )
    app = create_app(settings, bus=bus, token_verifier=verifier)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(app, bus, client, key)
