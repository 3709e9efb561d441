"""A checkout's business change and its stored idempotent answer share one commit."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import httpx
import sqlalchemy as sa

from orders.main import create_app
from servicekit.bus.factory import InMemoryBus

from .conftest import T0, Harness


async def test_placing_an_order_commits_once(
    harness: Harness, orders_url: str, kit: SimpleNamespace
) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant)
    await harness.seed_store(merchant, store)
    # An app of its own without relay and consumers: nothing else commits on its engine.
    quiet = kit.settings_for(orders_url, run_relay=False, run_consumers=False)
    app = create_app(quiet, bus=InMemoryBus(), token_verifier=kit.verifier())
    commits: list[Any] = []

    def count(connection: Any) -> None:
        commits.append(connection)

    body = {
        "id": str(uuid.uuid4()),
        "channel": "pos",
        "store_id": str(store),
        "occurred_at": T0.isoformat(),
        "lines": [{"product_id": str(product_id), "quantity": 2}],
    }
    headers = {**kit.auth(merchant), "Idempotency-Key": uuid.uuid4().hex}
    async with app.router.lifespan_context(app):
        engine = app.state.database.engine.sync_engine
        sa.event.listen(engine, "commit", count)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                placed = await client.post("/v1/orders", json=body, headers=headers)
                assert placed.status_code == 201, placed.text
                assert len(commits) == 1
                replayed = await client.post("/v1/orders", json=body, headers=headers)
                assert replayed.headers["idempotent-replayed"] == "true"
                assert len(commits) == 1
        finally:
            sa.event.remove(engine, "commit", count)
