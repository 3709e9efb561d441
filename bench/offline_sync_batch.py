"""The offline sync's own cost: one orders app in this process (ASGI, no network, no broker:
an in-memory bus, the relay and consumers off) on a fresh database of the machine's
PostgreSQL, answering ``POST /v1/orders/sync`` batches of ``--size`` orders of 3 lines paid in
cash, as ``bench/offline_sync.py`` sends them. What the full-stack benchmark cannot separate
from the downstream consumers sharing the CPU: the time and CPU of the batch itself.

Printed: per batch, wall and CPU time of this process (app and client), orders/s; then the
same batches resent (all ``already_synced``).

    POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python bench/offline_sync_batch.py [--batches 10] [--size 200]

Run it under ``py-spy record --pid`` (or ``py-spy record -- python ...``) to see where the
time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

import orders
from contracts.events.identity import StoreCreated
from contracts.events.inventory import ProductCreated
from contracts.money import Money
from contracts.registry import make_envelope
from orders.catalog.handlers import handlers as catalog_handlers
from orders.config import Settings
from orders.main import create_app
from orders.stores.handlers import handlers as store_handlers
from servicekit.auth import Role, generate_signing_key
from servicekit.bus.factory import InMemoryBus
from servicekit.db import drop_database, ensure_database
from servicekit.migrations import upgrade_async
from servicekit.testing.tokens import bearer_headers, static_verifier

PRICES = (1200, 2800, 500)
MIGRATIONS = Path(orders.__file__).parent / "migrations"


def order(products: list[uuid.UUID], shift_id: str, when: datetime) -> dict[str, Any]:
    lines = [
        {
            "product_id": str(p),
            "quantity": 1 + i,
            "unit_price": {"amount": price, "currency": "CNY"},
        }
        for i, (p, price) in enumerate(zip(products, PRICES, strict=True))
    ]
    total = sum(price * (1 + i) for i, price in enumerate(PRICES))
    return {
        "id": str(uuid.uuid4()),
        "occurred_at": when.isoformat(),
        "shift_id": shift_id,
        "lines": lines,
        "tenders": [
            {
                "payment_id": str(uuid.uuid4()),
                "method": "cash",
                "amount": {"amount": total, "currency": "CNY"},
            }
        ],
    }


async def main(args: argparse.Namespace) -> None:
    base = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    url = base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{url}/bench_sync_{uuid.uuid4().hex[:8]}"
    await ensure_database(url)
    try:
        await upgrade_async(MIGRATIONS, url)
        await run(args, url)
    finally:
        await drop_database(url)


def time_statements(engine: Any) -> dict[str, list[float]]:
    """Wall time of each statement (first 60 characters) between the driver's send and its
    answer: PostgreSQL's work plus the round trip."""
    timings: dict[str, list[float]] = defaultdict(list)

    @sa.event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault("started", []).append(time.perf_counter())

    @sa.event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started = conn.info["started"].pop()
        timings[" ".join(statement.split())[:60]].append(time.perf_counter() - started)

    return timings


def backend_cpu(pids: list[int]) -> float:
    """CPU seconds of PostgreSQL backends (this database's only), read from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def backends(database: Any) -> list[int]:
    async with database.transaction() as session:
        rows = await session.scalars(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        )
        return list(rows)


async def run(args: argparse.Namespace, url: str) -> None:
    key = generate_signing_key()
    settings = Settings(database_url=url, run_relay=False, run_consumers=False, log_level="WARNING")
    app = create_app(settings, bus=InMemoryBus(), token_verifier=static_verifier(key))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    merchant, store = uuid.uuid4(), uuid.uuid4()
    headers = bearer_headers(key, merchant, scopes=frozenset({"orders:write"}), role=Role.CASHIER)
    async with app.router.lifespan_context(app):
        database = app.state.database
        products = [uuid.uuid4() for _ in PRICES]
        async with database.transaction() as session:
            created = StoreCreated(
                store_id=store,
                merchant_id=merchant,
                code="S001",
                name="Store",
                address="1 Main Street",
                timezone="Asia/Shanghai",
                business_hours=[],
                region_id=None,
                status="active",
                version=1,
            )
            envelope = make_envelope(
                created, producer="identity", aggregate_id=store, merchant_id=merchant
            )
            store_handler = store_handlers.get(envelope.type)
            assert store_handler is not None
            await store_handler(session, envelope)
            for i, (product, price) in enumerate(zip(products, PRICES, strict=True)):
                snapshot = ProductCreated(
                    product_id=product,
                    version=1,
                    sku=f"SYNC-{i}",
                    name=f"Sync item {i}",
                    unit="each",
                    price=Money.of(price, "CNY"),
                    tax_rate_bps=600,
                    status="active",
                    cost=Money.of(price // 2, "CNY"),
                )
                envelope = make_envelope(
                    snapshot, producer="inventory", aggregate_id=product, merchant_id=merchant
                )
                envelope = envelope.model_copy(
                    update={"occurred_at": datetime.now(UTC) - timedelta(days=1)}
                )
                catalog_handler = catalog_handlers.get(envelope.type)
                assert catalog_handler is not None
                await catalog_handler(session, envelope)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=120
        ) as client:
            shift_id = str(uuid.uuid4())
            opened = await client.post(
                "/v1/shifts",
                json={
                    "id": shift_id,
                    "store_id": str(store),
                    "till_id": "bench-0",
                    "opening_float": {"amount": 0, "currency": "CNY"},
                    "opened_at": (datetime.now(UTC) - timedelta(hours=8)).isoformat(),
                },
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            opened.raise_for_status()
            start = datetime.now(UTC) - timedelta(hours=7)
            batches = [
                [
                    order(products, shift_id, start + timedelta(seconds=b * args.size + i))
                    for i in range(args.size)
                ]
                for b in range(args.batches + 1)
            ]
            timings = time_statements(database.engine.sync_engine) if args.statements else {}
            for label, wanted in (("first", "created"), ("resend", "already_synced")):
                timings.clear()
                walls, cpus = [], []
                pids = await backends(database)
                pg_before = 0.0
                for i, batch in enumerate(batches):
                    wall, cpu = time.perf_counter(), time.process_time()
                    response = await client.post(
                        "/v1/orders/sync",
                        json={"store_id": str(store), "till_id": "bench-0", "orders": batch},
                        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                    )
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    response.raise_for_status()
                    assert response.json()[wanted] == len(batch), response.text[:500]
                    if i:  # the first batch warms the statement caches
                        walls.append(wall)
                        cpus.append(cpu)
                    else:
                        pids = await backends(database)
                        pg_before = backend_cpu(pids)
                pg_cpu = backend_cpu(pids) - pg_before
                orders_sent = args.size * len(walls)
                print(
                    f"{label}: {len(walls)} batches of {args.size}: "
                    f"{orders_sent / sum(walls):.0f} orders/s, "
                    f"batch wall p50 {sorted(walls)[len(walls) // 2] * 1000:.0f} ms, "
                    f"CPU per order: this process {1000 * sum(cpus) / orders_sent:.2f} ms, "
                    f"PostgreSQL {1000 * pg_cpu / orders_sent:.2f} ms (load average "
                    f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
                )
                for statement, spent in sorted(timings.items(), key=lambda kv: -sum(kv[1]))[:12]:
                    print(
                        f"  {1000 * sum(spent) / len(batches):7.1f} ms/batch "
                        f"{len(spent) / len(batches):6.1f}x  {statement}"
                    )


if __name__ == "__main__":
    os.environ.setdefault("COUNTERTOP_ENV", "test")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument(
        "--statements", action="store_true", help="time each statement (adds overhead)"
    )
    asyncio.run(main(parser.parse_args()))
