"""Every service starts on its own migrated database and the broker, and answers its
operational endpoints: /healthz, /readyz, /metrics, /docs, and problem+json for a bad path."""

from __future__ import annotations

import importlib
from pathlib import Path

import httpx
import pytest

from servicekit.testing.plugin import CreateDatabase
from servicekit.testing.servers import Servers

SERVICES = ["identity", "orders", "inventory", "members", "payments", "device_gateway"]

pytestmark = pytest.mark.smoke


@pytest.mark.parametrize("package", SERVICES)
async def test_service_starts_and_reports_ready(
    package: str, create_database: CreateDatabase, servers: Servers
) -> None:
    config = importlib.import_module(f"{package}.config")
    main = importlib.import_module(f"{package}.main")
    migrations = Path(importlib.import_module(package).__file__ or "").parent / "migrations"
    url = await create_database(package, migrations=migrations)
    settings = config.Settings(
        database_url=url,
        kafka_bootstrap_servers=servers.kafka_bootstrap_servers,
        log_format="console",
    )
    app = main.create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "consumers": "ok"}
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200
            assert "outbox_backlog" in scraped.text
            assert "countertop_outbox_parked" in scraped.text
            assert (await client.get("/docs")).status_code == 200
            assert (
                (await client.get("/openapi.json")).json()["info"]["title"].startswith("Countertop")
            )
            missing = await client.get("/v1/no-such-thing")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            assert missing.json()["code"] == "not_found"
