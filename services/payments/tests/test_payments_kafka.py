"""The payments service on the real broker: an order placed on Kafka is paid in cash and the
succeeded event comes out on Kafka."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import httpx

from contracts.events.orders import OrderLine, OrderPlaced
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import make_envelope
from payments.config import Settings
from payments.main import create_app
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER
from servicekit.auth import StaticKeySource, TokenVerifier, generate_signing_key, public_jwks
from servicekit.bus.base import OutgoingMessage
from servicekit.bus.kafka import KafkaConsumerTransport, KafkaPublisher
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers

from .conftest import MIGRATIONS, bearer, eventually, replica_state


async def test_cash_payment_over_kafka(create_database: CreateDatabase, servers: Servers) -> None:
    url = await create_database("payments_kafka", migrations=MIGRATIONS)
    settings = Settings(
        database_url=url,
        kafka_bootstrap_servers=servers.kafka_bootstrap_servers,
        log_format="console",
        outbox_poll_interval=0.1,
        run_reconciler=False,
        kafka_partitions=1,
    )
    key = generate_signing_key()
    verifier = TokenVerifier(
        StaticKeySource(public_jwks([key])), issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE
    )
    app = create_app(settings, token_verifier=verifier)
    merchant, order_id, store_id = new_id(), new_id(), new_id()
    total = Money.of(2600, "CNY")
    placed = OrderPlaced(
        order_id=order_id,
        store_id=store_id,
        channel="pos",
        lines=[
            OrderLine(
                line_id=new_id(),
                product_id=new_id(),
                name="Dumplings",
                quantity=2,
                unit_price=Money.of(1300, "CNY"),
                discount=Money.zero("CNY"),
                total=total,
            )
        ],
        subtotal=total,
        discount_total=Money.zero("CNY"),
        total=total,
        placed_at=datetime.now(UTC),
    )
    envelope = make_envelope(
        placed, producer="orders", aggregate_id=order_id, merchant_id=merchant, store_id=store_id
    )
    publisher = KafkaPublisher(servers.kafka_bootstrap_servers, client_id="test-orders")
    reader = KafkaConsumerTransport(
        servers.kafka_bootstrap_servers,
        group_id=f"test-{uuid.uuid4().hex}",
        topics=["payments.payment"],
    )
    async with app.router.lifespan_context(app):
        await publisher.start()
        try:
            await publisher.publish(
                [
                    OutgoingMessage(
                        topic="orders.order",
                        key=str(order_id).encode(),
                        value=envelope.model_dump_json().encode(),
                    )
                ]
            )
        finally:
            await publisher.stop()
        await eventually(lambda: replica_state(app, order_id), timeout=30)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post(
                "/v1/payments",
                json={
                    "order_id": str(order_id),
                    "method": "cash",
                    "amount": total.model_dump(),
                    "tendered": {"amount": 3000, "currency": "CNY"},
                },
                headers={"Idempotency-Key": "k1", **bearer(key, merchant)},
            )
        assert response.status_code == 201, response.text
        payment_id = response.json()["id"]

        await reader.start()
        try:
            found = None
            deadline = asyncio.get_running_loop().time() + 30
            while found is None and asyncio.get_running_loop().time() < deadline:
                batch = await reader.fetch(500, 100)
                for messages in batch.values():
                    for message in messages:
                        event = json.loads(message.value)
                        if event["payload"].get("payment_id") == payment_id:
                            found = event
        finally:
            await reader.stop()
    assert found is not None
    assert found["type"] == "payments.payment.succeeded"
    assert found["payload"]["amount"] == {"amount": 2600, "currency": "CNY"}
    assert found["merchant_id"] == str(merchant)
    assert response.json()["change"] == {"amount": 400, "currency": "CNY"}
