"""Fixtures of the payments tests: one migrated database, the app on the in-memory bus, the
sandbox notifying straight into the app, and tokens for any merchant and scopes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import sqlalchemy as sa
from fastapi import FastAPI

import payments
from contracts.events.orders import OrderCancelled, OrderLine, OrderPlaced
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import make_envelope
from payments.config import Settings
from payments.main import create_app
from payments.providers.sandbox import SandboxProvider
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

MIGRATIONS = Path(payments.__file__).parent / "migrations"
ALL_SCOPES = frozenset({"orders:write", "refunds:approve", "settings:manage"})


def bearer(
    key: SigningKey,
    merchant_id: uuid.UUID,
    scopes: frozenset[str] = ALL_SCOPES,
    store_ids: frozenset[uuid.UUID] | None = None,
) -> dict[str, str]:
    """An Authorization header for a staff member of ``merchant_id``."""
    return bearer_headers(key, merchant_id, scopes=scopes, store_ids=store_ids)


async def replica_state(app: FastAPI, order_id: uuid.UUID) -> str | None:
    async with app.state.database.transaction() as session:
        state: str | None = await session.scalar(
            sa.text("SELECT state FROM order_replicas WHERE order_id = :id"), {"id": order_id}
        )
        return state


class Harness:
    def __init__(
        self, app: FastAPI, bus: InMemoryBus, client: httpx.AsyncClient, key: SigningKey
    ) -> None:
        self.app = app
        self.bus = bus
        self.client = client
        self.key = key

    @property
    def sandbox(self) -> SandboxProvider:
        sandbox: SandboxProvider = self.app.state.sandbox
        return sandbox

    def token(
        self,
        merchant_id: uuid.UUID,
        scopes: frozenset[str] = ALL_SCOPES,
        store_ids: frozenset[uuid.UUID] | None = None,
    ) -> dict[str, str]:
        return bearer(self.key, merchant_id, scopes, store_ids)

    async def publish(self, payload: Any, merchant_id: uuid.UUID, aggregate_id: uuid.UUID) -> None:
        envelope = make_envelope(
            payload, producer="orders", aggregate_id=aggregate_id, merchant_id=merchant_id
        )
        topic = envelope.type.rsplit(".", 1)[0]
        await self.bus.broker.append(
            [
                OutgoingMessage(
                    topic=topic,
                    key=str(aggregate_id).encode(),
                    value=envelope.model_dump_json().encode(),
                )
            ]
        )

    async def replica_state(self, order_id: uuid.UUID) -> str | None:
        return await replica_state(self.app, order_id)

    async def place_order(
        self, merchant_id: uuid.UUID, total: int, store_id: uuid.UUID | None = None
    ) -> tuple[uuid.UUID, uuid.UUID]:
        order_id, store = new_id(), store_id or new_id()
        line = OrderLine(
            line_id=new_id(),
            product_id=new_id(),
            name="Noodles",
            quantity=1,
            unit_price=Money.of(total, "CNY"),
            discount=Money.zero("CNY"),
            total=Money.of(total, "CNY"),
        )
        placed = OrderPlaced(
            order_id=order_id,
            store_id=store,
            channel="pos",
            lines=[line],
            subtotal=Money.of(total, "CNY"),
            discount_total=Money.zero("CNY"),
            total=Money.of(total, "CNY"),
            placed_at=datetime.now(UTC),
        )
        await self.publish(placed, merchant_id, order_id)
        await eventually(lambda: self.replica_state(order_id))
        return order_id, store

    async def cancel_order(
        self, merchant_id: uuid.UUID, order_id: uuid.UUID, store_id: uuid.UUID
    ) -> None:
        await self.publish(
            OrderCancelled(order_id=order_id, store_id=store_id), merchant_id, order_id
        )

        async def cancelled() -> bool:
            return await self.replica_state(order_id) == "cancelled"

        await eventually(cancelled)

    def payment_events(self, payment_id: uuid.UUID | str) -> list[dict[str, Any]]:
        found = []
        for message in self.bus.broker.messages("payments.payment"):
            envelope = json.loads(message.value)
            if envelope["payload"]["payment_id"] == str(payment_id):
                found.append(envelope)
        return found

    async def wait_events(
        self, payment_id: uuid.UUID | str, count: int, *, settle: float = 0.0
    ) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            events = self.payment_events(payment_id)
            return events if len(events) >= count else None

        events: list[dict[str, Any]] = await eventually(enough)
        if settle:
            await asyncio.sleep(settle)
            events = self.payment_events(payment_id)
        return events

    async def pay(
        self,
        merchant_id: uuid.UUID,
        body: dict[str, Any],
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/payments",
            json=body,
            headers={
                "Idempotency-Key": key or uuid.uuid4().hex,
                **(headers or self.token(merchant_id)),
            },
        )

    async def get(self, merchant_id: uuid.UUID, payment_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/payments/{payment_id}", headers=self.token(merchant_id)
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def wait_status(
        self, merchant_id: uuid.UUID, payment_id: str, status: str
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            payment = await self.get(merchant_id, payment_id)
            return payment if payment["status"] == status else None

        result: dict[str, Any] = await eventually(reached)
        return result


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def payments_url(create_database: CreateDatabase) -> str:
    return await create_database("payments", migrations=MIGRATIONS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(payments_url: str) -> AsyncIterator[Harness]:
    holder: dict[str, FastAPI] = {}

    async def notifier(path: str, body: bytes, headers: dict[str, str]) -> int:
        transport = httpx.ASGITransport(app=holder["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://payments") as client:
            response = await client.post(path, content=body, headers=headers)
            return response.status_code

    settings = Settings(
        database_url=payments_url,
        log_format="console",
        outbox_poll_interval=0.05,
        sandbox_notify_delay=0.01,
        run_reconciler=False,
        db_pool_size=5,
    )
    bus = InMemoryBus()
    key_holder = generate_signing_key()
    verifier = TokenVerifier(
        StaticKeySource(public_jwks([key_holder])), issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE
    )
    app = create_app(settings, bus=bus, token_verifier=verifier, sandbox_notifier=notifier)
    holder["app"] = app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(app, bus, client, key_holder)
