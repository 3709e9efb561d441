"""The members service on the real broker: an order paid on Kafka earns its member points."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from contracts.ids import new_id
from contracts.registry import make_envelope
from members.config import Settings
from members.main import create_app
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER
from servicekit.auth import StaticKeySource, TokenVerifier, generate_signing_key, public_jwks
from servicekit.bus.base import OutgoingMessage
from servicekit.bus.kafka import KafkaPublisher
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers

from .conftest import MIGRATIONS, bearer, eventually
from .test_members import paid_event


async def test_points_awarded_from_kafka(create_database: CreateDatabase, servers: Servers) -> None:
    url = await create_database("members_kafka", migrations=MIGRATIONS)
    settings = Settings(
        database_url=url,
        kafka_bootstrap_servers=servers.kafka_bootstrap_servers,
        log_format="console",
        kafka_partitions=1,
    )
    key = generate_signing_key()
    verifier = TokenVerifier(
        StaticKeySource(public_jwks([key])), issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE
    )
    app = create_app(settings, token_verifier=verifier)
    merchant = new_id()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post(
                "/v1/members", json={"phone": "+8613611112222"}, headers=bearer(key, merchant)
            )
            assert created.status_code == 201, created.text
            member_id = created.json()["id"]
            order_id = new_id()
            envelope = make_envelope(
                paid_event(order_id, uuid.UUID(member_id), 2550),
                producer="orders",
                aggregate_id=order_id,
                merchant_id=merchant,
            )
            publisher = KafkaPublisher(servers.kafka_bootstrap_servers, client_id="test-orders")
            await publisher.start()
            try:
                message = OutgoingMessage(
                    topic="orders.order",
                    key=str(order_id).encode(),
                    value=envelope.model_dump_json().encode(),
                )
                # Delivered twice, as at-least-once allows.
                await publisher.publish([message])
                await publisher.publish([message])
            finally:
                await publisher.stop()

            async def balance() -> dict[str, Any] | None:
                response = await client.get(
                    f"/v1/members/{member_id}/points", headers=bearer(key, merchant)
                )
                body: dict[str, Any] = response.json()
                return body if body["balance"] else None

            points = await eventually(balance, timeout=30)
    assert points["balance"] == 25
    assert len(points["items"]) == 1
