"""Fixtures of the inventory tests: one migrated database and one running app on an in-memory
bus for the whole run; each test works for merchants of its own, so tests never see each
other's rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from pydantic import BaseModel

import inventory
from contracts.envelope import EventEnvelope
from contracts.events.identity import StoreCreated, StoreStatusChanged
from contracts.registry import make_envelope
from contracts.topics import topic_for_event_type
from inventory.catalog.barcode import gtin_check_digit
from inventory.config import Settings
from inventory.main import create_app
from inventory.stores.handlers import store_created, store_status_changed
from servicekit.auth import (
    Role,
    TokenVerifier,
    generate_signing_key,
)
from servicekit.bus.base import OutgoingMessage
from servicekit.bus.factory import InMemoryBus
from servicekit.db import Database
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.tokens import bearer_headers, static_verifier
from servicekit.testing.wait import eventually

MIGRATIONS = Path(inventory.__file__).parent / "migrations"
KEY = generate_signing_key()
ALL_SCOPES = frozenset({"catalog:manage", "inventory:adjust", "orders:write", "reports:read"})


def verifier() -> TokenVerifier:
    return static_verifier(KEY)


def auth_headers(
    merchant_id: uuid.UUID,
    scopes: frozenset[str] = ALL_SCOPES,
    store_ids: frozenset[uuid.UUID] | None = None,
) -> dict[str, str]:
    return bearer_headers(KEY, merchant_id, scopes=scopes, store_ids=store_ids, role=Role.HQ_ADMIN)


def keyed(merchant_id: uuid.UUID, **kwargs: Any) -> dict[str, str]:
    """Auth headers plus a fresh ``Idempotency-Key``, for the endpoints that require one."""
    return {**auth_headers(merchant_id, **kwargs), "Idempotency-Key": uuid.uuid4().hex}


def ean13(body12: str) -> str:
    """An EAN-13 code with the right check digit."""
    return body12 + str(gtin_check_digit(body12))


@dataclass
class Harness:
    client: httpx.AsyncClient
    bus: InMemoryBus
    database: Database

    auth = staticmethod(auth_headers)
    keyed = staticmethod(keyed)
    ean13 = staticmethod(ean13)

    async def store(
        self,
        merchant_id: uuid.UUID,
        store_id: uuid.UUID | None = None,
        timezone: str = "Asia/Shanghai",
    ) -> uuid.UUID:
        """A store of ``merchant_id`` as identity announces it, applied to the replica."""
        store_id = store_id or uuid.uuid4()
        created = StoreCreated(
            store_id=store_id,
            merchant_id=merchant_id,
            code=store_id.hex[:8],
            name="Store",
            address="1 Main St",
            timezone=timezone,
            business_hours=[],
            region_id=None,
            status="active",
            version=1,
        )
        envelope = make_envelope(
            created, producer="identity", aggregate_id=store_id, merchant_id=merchant_id
        )
        async with self.database.transaction() as session:
            await store_created(session, envelope)
        return store_id

    async def lock_store(self, merchant_id: uuid.UUID, store_id: uuid.UUID) -> None:
        change = StoreStatusChanged(
            store_id=store_id,
            merchant_id=merchant_id,
            status="read_only",
            previous_status="active",
            version=2,
        )
        envelope = make_envelope(
            change, producer="identity", aggregate_id=store_id, merchant_id=merchant_id
        )
        async with self.database.transaction() as session:
            await store_status_changed(session, envelope)

    @staticmethod
    def envelope(
        payload: BaseModel, merchant_id: uuid.UUID, aggregate_id: uuid.UUID
    ) -> EventEnvelope:
        return make_envelope(
            payload, producer="orders", aggregate_id=aggregate_id, merchant_id=merchant_id
        )

    async def product(self, merchant_id: uuid.UUID, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sku": f"SKU-{uuid.uuid4().hex[:10]}",
            "name": "Oolong tea",
            "price": {"amount": 1200, "currency": "CNY"},
            **fields,
        }
        response = await self.client.post(
            "/v1/products", json=body, headers=auth_headers(merchant_id)
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def events(self, event_type: str, merchant_id: uuid.UUID) -> list[EventEnvelope]:
        found = []
        for message in self.bus.broker.messages(topic_for_event_type(event_type)):
            envelope = EventEnvelope.model_validate_json(message.value)
            if envelope.type == event_type and envelope.merchant_id == merchant_id:
                found.append(envelope)
        return found

    async def wait_events(
        self, event_type: str, merchant_id: uuid.UUID, count: int, timeout: float = 10.0
    ) -> list[EventEnvelope]:
        async def enough() -> bool:
            return len(self.events(event_type, merchant_id)) >= count

        await eventually(enough, timeout=timeout)
        return self.events(event_type, merchant_id)

    async def publish(self, envelope: EventEnvelope) -> None:
        await self.bus.broker.append(
            [
                OutgoingMessage(
                    topic=topic_for_event_type(envelope.type),
                    key=envelope.aggregate_id.encode(),
                    value=envelope.model_dump_json().encode(),
                )
            ]
        )

    async def on_hand(self, merchant_id: uuid.UUID, store_id: uuid.UUID, product_id: str) -> int:
        response = await self.client.get(
            f"/v1/stores/{store_id}/stock/{product_id}", headers=auth_headers(merchant_id)
        )
        assert response.status_code == 200, response.text
        value: int = response.json()["on_hand"]
        return value

    async def wait_on_hand(
        self, merchant_id: uuid.UUID, store_id: uuid.UUID, product_id: str, expected: int
    ) -> None:
        async def reached() -> bool:
            return await self.on_hand(merchant_id, store_id, product_id) == expected

        try:
            await eventually(reached, timeout=10.0)
        except AssertionError:
            actual = await self.on_hand(merchant_id, store_id, product_id)
            raise AssertionError(f"on_hand is {actual}, expected {expected}") from None


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=url,
        log_format="console",
        outbox_poll_interval=0.1,
        consumer_retry_backoff=0.01,
        consumer_max_attempts=2,
        store_replica_wait=0.2,
        price_change_interval=0.1,
        import_poll_interval=0.05,
        **overrides,
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def inventory_url(create_database: CreateDatabase) -> str:
    return await create_database("inventory", migrations=MIGRATIONS)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def harness(inventory_url: str) -> AsyncIterator[Harness]:
    bus = InMemoryBus()
    app = create_app(settings_for(inventory_url), bus=bus, token_verifier=verifier())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(client=client, bus=bus, database=app.state.database)
