"""Fixtures of the payments tests: one migrated database, the app on the in-memory bus, the
sandbox notifying straight into the app, and tokens for any merchant and scopes."""

from __future__ import annotations

import asyncio
import base64
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


async def replica_state(
    app: FastAPI, order_id: uuid.UUID, merchant_id: uuid.UUID | None = None
) -> str | None:
    async with app.state.database.transaction() as session:
        state: str | None = await session.scalar(
            sa.text(
                "SELECT state FROM order_replicas WHERE order_id = :id"
                " AND (CAST(:m AS uuid) IS NULL OR merchant_id = :m)"
            ),
            {"id": order_id, "m": merchant_id},
        )
        return state


def _token_merchant(authorization: str | None) -> str | None:
    """The merchant claim of a bearer token, unverified: the fake trusts the test's tokens."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    payload = authorization.removeprefix("Bearer ").split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    merchant = claims.get("mid")
    return str(merchant) if merchant else None


class FakeOrders:
    """The orders service's ``GET /v1/orders/{id}`` as an httpx transport: answers the orders
    of the caller's merchant, 404 for others, or fails to connect while ``down``."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}
        self.down = False
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def add(
        self,
        merchant_id: uuid.UUID,
        order_id: uuid.UUID,
        store_id: uuid.UUID,
        total: int,
        *,
        status: str = "placed",
        lines: list[tuple[uuid.UUID, int]] | None = None,
    ) -> None:
        self.orders[(str(merchant_id), str(order_id))] = {
            "id": str(order_id),
            "store_id": str(store_id),
            "member_id": None,
            "status": status,
            "total": {"amount": total, "currency": "CNY"},
            "lines": [
                {"product_id": str(product), "quantity": quantity}
                for product, quantity in (lines or [(new_id(), 1)])
            ],
        }

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("orders is down", request=request)
        merchant = _token_merchant(request.headers.get("Authorization"))
        if merchant is None:
            return httpx.Response(401, json={"code": "unauthorized"})
        order_id = request.url.path.rsplit("/", 1)[-1]
        body = self.orders.get((merchant, order_id))
        if body is None:
            return httpx.Response(404, json={"code": "order_not_found"})
        return httpx.Response(200, json=body)


def placed_event(
    order_id: uuid.UUID,
    store: uuid.UUID,
    total: int,
    lines: list[tuple[uuid.UUID, int]] | None = None,
) -> OrderPlaced:
    specs = lines or [(new_id(), 1)]
    order_lines = []
    for index, (product, quantity) in enumerate(specs):
        # The whole total on the first line keeps the arithmetic trivially consistent.
        amount = total if index == 0 else 0
        order_lines.append(
            OrderLine(
                line_id=new_id(),
                product_id=product,
                name="Noodles",
                quantity=quantity,
                unit_price=Money.of(amount // quantity, "CNY"),
                discount=Money.zero("CNY"),
                total=Money.of(amount, "CNY"),
            )
        )
    return OrderPlaced(
        order_id=order_id,
        store_id=store,
        channel="pos",
        lines=order_lines,
        subtotal=Money.of(total, "CNY"),
        discount_total=Money.zero("CNY"),
        total=Money.of(total, "CNY"),
        placed_at=datetime.now(UTC),
    )


class Harness:
    def __init__(
        self,
        app: FastAPI,
        bus: InMemoryBus,
        client: httpx.AsyncClient,
        key: SigningKey,
        orders: FakeOrders,
    ) -> None:
        self.app = app
        self.bus = bus
        self.client = client
        self.key = key
        self.orders = orders

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

    async def replica_state(
        self, order_id: uuid.UUID, merchant_id: uuid.UUID | None = None
    ) -> str | None:
        return await replica_state(self.app, order_id, merchant_id)

    async def place_order(
        self,
        merchant_id: uuid.UUID,
        total: int,
        store_id: uuid.UUID | None = None,
        *,
        order_id: uuid.UUID | None = None,
        lines: list[tuple[uuid.UUID, int]] | None = None,
        wait: bool = True,
    ) -> tuple[uuid.UUID, uuid.UUID]:
        order_id, store = order_id or new_id(), store_id or new_id()
        placed = placed_event(order_id, store, total, lines)
        await self.publish(placed, merchant_id, order_id)
        if wait:
            await eventually(lambda: self.replica_state(order_id, merchant_id))
        return order_id, store

    async def wait_inbox(self, event_count: int) -> None:
        """Wait until the replica consumer has applied ``event_count`` events in all."""

        async def applied() -> bool:
            async with self.app.state.database.transaction() as session:
                count = await session.scalar(sa.text("SELECT count(*) FROM inbox"))
            return int(count or 0) >= event_count

        await eventually(applied)

    async def inbox_count(self) -> int:
        async with self.app.state.database.transaction() as session:
            return int(await session.scalar(sa.text("SELECT count(*) FROM inbox")) or 0)

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
        order_wait_seconds=0.2,
        db_pool_size=5,
    )
    bus = InMemoryBus()
    key_holder = generate_signing_key()
    verifier = TokenVerifier(
        StaticKeySource(public_jwks([key_holder])), issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE
    )
    orders = FakeOrders()
    app = create_app(
        settings,
        bus=bus,
        token_verifier=verifier,
        sandbox_notifier=notifier,
        orders_transport=orders.transport,
    )
    holder["app"] = app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(app, bus, client, key_holder, orders)
