"""Fixtures of the device-gateway tests: a migrated database, a real MQTT broker (the
embedded amqtt, or the one ``MQTT_URL`` names), fake network printers, and a running gateway
on an in-memory bus. Each test works for merchants and stores of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import pytest_asyncio
from pydantic import BaseModel

import device_gateway
from contracts.envelope import EventEnvelope
from contracts.events.identity import StoreCreated
from contracts.registry import make_envelope
from contracts.topics import topic_for_event_type
from device_gateway.config import Settings
from device_gateway.main import create_app
from device_gateway.printing.fakeprinter import FakePrinter
from servicekit.auth import Role, generate_signing_key
from servicekit.bus.base import OutgoingMessage
from servicekit.bus.factory import InMemoryBus
from servicekit.db import Database
from servicekit.embedded.ports import free_port
from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.tokens import bearer_headers, static_verifier
from servicekit.testing.wait import eventually

MIGRATIONS = Path(device_gateway.__file__).parent / "migrations"
KEY = generate_signing_key()
MANAGER = frozenset({"devices:manage", "devices:operate"})


def auth(
    merchant_id: uuid.UUID,
    scopes: frozenset[str] = MANAGER,
    store_ids: frozenset[uuid.UUID] | None = None,
) -> dict[str, str]:
    return bearer_headers(
        KEY, merchant_id, scopes=scopes, store_ids=store_ids, role=Role.STORE_MANAGER
    )


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """The broker of the run: ``MQTT_URL`` when set (Mosquitto in CI), else an embedded amqtt."""
    external = os.environ.get("MQTT_URL")
    if external:
        yield external
        return
    from servicekit.embedded.mqtt import EmbeddedMqtt

    with EmbeddedMqtt(port=free_port()) as broker:
        yield broker.url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway_url(create_database: CreateDatabase) -> str:
    return await create_database("devices", migrations=MIGRATIONS)


@dataclass
class Gateway:
    client: httpx.AsyncClient
    bus: InMemoryBus
    database: Database
    mqtt_url: str
    printers: list[FakePrinter] = field(default_factory=list)

    auth = staticmethod(auth)

    async def publish(self, event: EventEnvelope) -> None:
        await self.bus.broker.append(
            [
                OutgoingMessage(
                    topic=topic_for_event_type(event.type),
                    key=event.aggregate_id.encode(),
                    value=event.model_dump_json().encode(),
                )
            ]
        )

    def events(self, event_type: str, merchant_id: uuid.UUID) -> list[EventEnvelope]:
        found = []
        for message in self.bus.broker.messages(topic_for_event_type(event_type)):
            event = EventEnvelope.model_validate_json(message.value)
            if event.type == event_type and event.merchant_id == merchant_id:
                found.append(event)
        return found

    async def wait_events(
        self, event_type: str, merchant_id: uuid.UUID, count: int = 1
    ) -> list[EventEnvelope]:
        async def enough() -> bool:
            return len(self.events(event_type, merchant_id)) >= count

        await eventually(enough, timeout=30.0)
        return self.events(event_type, merchant_id)

    async def store(self, merchant_id: uuid.UUID, name: str = "老王面馆") -> uuid.UUID:
        """A store of ``merchant_id``, delivered as identity would announce it."""
        store_id = uuid.uuid4()
        created = StoreCreated(
            store_id=store_id,
            merchant_id=merchant_id,
            code=f"S{store_id.hex[:6]}",
            name=name,
            address="1 Main St",
            timezone="Asia/Shanghai",
            business_hours=[],
            region_id=None,
            status="active",
            version=1,
        )
        await self.publish(
            make_envelope(
                created, producer="identity", aggregate_id=store_id, merchant_id=merchant_id
            )
        )

        async def replicated() -> bool:
            response = await self.client.get(
                f"/v1/stores/{store_id}/devices", headers=auth(merchant_id)
            )
            return response.status_code == 200

        await eventually(replicated, timeout=30.0)
        return store_id

    async def printer(self, **kwargs: Any) -> FakePrinter:
        printer = FakePrinter(free_port(), **kwargs)
        await printer.start()
        self.printers.append(printer)
        return printer

    async def bind_printer(
        self,
        merchant_id: uuid.UUID,
        store_id: uuid.UUID,
        printer: FakePrinter,
        *,
        type: str = "kitchen_printer",
        station: str | None = "hot",
        priority: int = 0,
        paper_width_mm: int = 80,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sn": f"PR{uuid.uuid4().hex[:10].upper()}",
            "mac": "00:11:22:" + ":".join(uuid.uuid4().hex[i : i + 2] for i in (0, 2, 4)),
            "type": type,
            "store_id": str(store_id),
            "connection": {"kind": "tcp", "host": printer.host, "port": printer.port},
            "priority": priority,
            "paper_width_mm": paper_width_mm,
        }
        if station is not None:
            body["station"] = station
        response = await self.client.post("/v1/devices/bind", json=body, headers=auth(merchant_id))
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def mqtt_client(self, sn: str, **kwargs: Any) -> aiomqtt.Client:
        from urllib.parse import urlsplit

        url = urlsplit(self.mqtt_url)
        return aiomqtt.Client(
            url.hostname or "127.0.0.1",
            url.port or 1883,
            username=url.username,
            password=url.password,
            identifier=f"device-{sn}-{uuid.uuid4().hex[:6]}",
            **kwargs,
        )


def envelope(payload: BaseModel, merchant_id: uuid.UUID, aggregate_id: uuid.UUID) -> EventEnvelope:
    return make_envelope(
        payload, producer="orders", aggregate_id=aggregate_id, merchant_id=merchant_id
    )


def settings_for(url: str, mqtt_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "mqtt_url": mqtt_url,
        # A fixed id: the bridge keeps a persistent session (QoS 1 commands survive a restart),
        # and a broker that outlives the test run (the machine's Mosquitto) would otherwise
        # keep one more session per run, each queueing every device message forever.
        "mqtt_client_id": "countertop-test-gateway",
        "log_format": "console",
        "outbox_poll_interval": 0.1,
        "consumer_retry_backoff": 0.01,
        "consumer_max_attempts": 2,
        "print_max_attempts": 3,
        "print_retry_backoff": 0.2,
        "print_retry_backoff_max": 0.5,
        "print_poll_interval": 0.1,
        "print_connect_timeout": 0.5,
        "command_poll_interval": 0.1,
        "command_resend_seconds": 1.0,
        "kds_poll_interval": 0.05,
        "receipt_qr_template": "https://einvoice.example/{order_id}",
        **overrides,
    }
    return Settings(**values)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway(gateway_url: str, mqtt_url: str) -> AsyncIterator[Gateway]:
    bus = InMemoryBus()
    app = create_app(
        settings_for(gateway_url, mqtt_url), bus=bus, token_verifier=static_verifier(KEY)
    )
    async with app.router.lifespan_context(app):
        bridge = app.state.runtime.extras["mqtt_bridge"]
        await eventually(lambda: _connected(bridge), timeout=30.0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            harness = Gateway(
                client=client, bus=bus, database=app.state.database, mqtt_url=mqtt_url
            )
            try:
                yield harness
            finally:
                for printer in harness.printers:
                    await printer.stop()


async def _connected(bridge: Any) -> bool:
    return bool(bridge.connected.is_set())
