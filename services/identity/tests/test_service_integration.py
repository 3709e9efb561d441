"""Identity end to end with its neighbours: events reach the real broker, and another
service accepts identity's tokens through the JWKS and refuses tampered ones."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any, ClassVar

import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import APIRouter, FastAPI

from identity.main import create_app
from identity.testing import MIGRATIONS, Api, CapturingSender, bearer, make_settings
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER
from servicekit.app import create_app as build_app
from servicekit.auth import JwksKeySource, PrincipalDep, TokenVerifier
from servicekit.bus.factory import InMemoryBus
from servicekit.settings import ServiceSettings
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers


async def _read(servers: Servers, topics: list[str], merchant_id: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=servers.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"identity-test-{uuid.uuid4()}",
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event.get("merchant_id") == merchant_id:
                        found.append(event)
            if len({e["type"] for e in found}) >= 3:
                break
    finally:
        await consumer.stop()
    return found


async def test_signup_events_reach_kafka_without_secrets(
    create_database: CreateDatabase, servers: Servers
) -> None:
    url = await create_database("identity_kafka", migrations=MIGRATIONS)
    sender = CapturingSender()
    settings = make_settings(
        url, kafka_bootstrap_servers=servers.kafka_bootstrap_servers, outbox_poll_interval=0.2
    )
    app = create_app(settings, code_sender=sender)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://identity") as client:
            tenant = await Api(client, sender).signup()
        events = await _read(
            servers,
            ["identity.merchant", "identity.store", "identity.staff"],
            tenant.merchant["id"],
        )
    types = {event["type"] for event in events}
    assert {
        "identity.merchant.created",
        "identity.store.created",
        "identity.staff.created",
    } <= types
    text = json.dumps(events)
    assert tenant.admin.phone not in text
    assert "110101199003074514" not in text
    assert "password" not in text
    assert "argon2" not in text
    staff_event = next(e for e in events if e["type"] == "identity.staff.created")
    assert staff_event["payload"]["super_admin"] is True
    assert staff_event["aggregate_id"] == tenant.admin.id


class ProbeSettings(ServiceSettings):
    service_name: ClassVar[str] = "probe"


async def test_another_service_accepts_identity_tokens_via_jwks(
    api: Api, identity_app: FastAPI, create_database: CreateDatabase
) -> None:
    tenant = await api.signup()
    cashier = await api.staff(tenant, tenant.admin, "cashier", store_id=tenant.store["id"])

    router = APIRouter()

    @router.get("/v1/whoami")
    async def whoami(principal: PrincipalDep) -> dict[str, Any]:
        return {
            "staff_id": str(principal.subject),
            "merchant_id": str(principal.merchant_id),
            "role": principal.role.value,
            "store_ids": sorted(str(s) for s in principal.store_ids or ()),
        }

    jwks_client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=identity_app), base_url="http://identity"
    )
    source = JwksKeySource("http://identity/.well-known/jwks.json", http_client=jwks_client)
    probe = build_app(
        ProbeSettings(database_url=await create_database("probe"), log_format="console"),
        title="Probe",
        routers=[router],
        bus=InMemoryBus(),
        token_verifier=TokenVerifier(source, issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE),
    )
    async with probe.router.lifespan_context(probe):
        transport = httpx.ASGITransport(app=probe)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            ok = await client.get("/v1/whoami", headers=cashier.headers)
            assert ok.status_code == 200, ok.text
            assert ok.json() == {
                "staff_id": cashier.id,
                "merchant_id": tenant.merchant["id"],
                "role": "cashier",
                "store_ids": [tenant.store["id"]],
            }
            header, payload, signature = cashier.access.split(".")
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            claims["role"] = "hq_admin"
            claims.pop("sto")
            forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
            refused = await client.get(
                "/v1/whoami", headers=bearer(f"{header}.{forged}.{signature}")
            )
            assert refused.status_code == 401
            assert refused.json()["code"] == "invalid_token"
            assert (await client.get("/v1/whoami")).status_code == 401
    await jwks_client.aclose()
