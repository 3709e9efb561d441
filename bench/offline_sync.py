"""Benchmark of the offline batch sync: tills uploading a day's orders in batches of 200.

Against a running stack (``make up``) or, with ``--start``, a stack started for the run in a
temporary ``var/`` directory (see ``bench/checkout.py``).

Each till sends ``--batches`` batches of ``--size`` orders (3 lines, paid in cash offline)
through ``POST /v1/orders/sync``, one batch after the other; ``--tills`` tills at once. Every
batch is then sent a second time under a new key (all ``already_synced``).

Printed:

* orders/s through the sync (created orders over the wall time of the first pass), p50/p99 of
  a batch's answer, and the rate of the second pass (orders found already synced);
* the time from the last batch's answer until every downstream effect is applied: payments
  recorded every offline tender, inventory deducted the stock of every order, both read from
  the databases;
* CPU seconds per order of each process (services, PostgreSQL, broker).

    python bench/offline_sync.py [--tills 2] [--batches 10] [--size 200] [--start]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).parent))

from checkout import (
    CASHIER_PHONE,
    HQ_PHONE,
    SERVICES_BY_NAME,
    Stack,
    _cpu,
    _cpu_delta,
    _database_url,
    _machine_busy,
    _stack_root,
    login,
    pct,
    started_stack,
)

PRICES = (1200, 2800, 500)


def order(products: list[str], shift_id: str, when: datetime) -> dict[str, Any]:
    lines = [
        {
            "product_id": p,
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


async def prepare(stack: Stack, tills: int) -> tuple[dict[str, str], str, list[str], list[str]]:
    async with (
        stack.client("identity") as identity,
        stack.client("inventory") as inventory,
        stack.client("orders") as orders,
    ):
        hq = await login(identity, HQ_PHONE)
        cashier = await login(identity, CASHIER_PHONE)
        stores = (await identity.get("/v1/stores", headers=hq)).json()["items"]
        store_id = next(s["id"] for s in stores if s.get("code") == "S001")
        run = secrets.token_hex(3)
        products = []
        for i, price in enumerate(PRICES):
            response = await inventory.post(
                "/v1/products",
                json={
                    "sku": f"SYNC-{run}-{i}",
                    "name": f"Sync item {i}",
                    "price": {"amount": price, "currency": "CNY"},
                    "tax_rate_bps": 600,
                },
                headers={**hq, "Idempotency-Key": f"sync-product-{run}-{i}"},
            )
            response.raise_for_status()
            products.append(response.json()["id"])
        response = await inventory.post(
            f"/v1/stores/{store_id}/stock-in",
            json={
                "document": f"SYNC-{run}",
                "occurred_at": datetime.now(UTC).isoformat(),
                "lines": [{"product_id": p, "quantity": 10_000_000} for p in products],
            },
            headers={**hq, "Idempotency-Key": f"sync-stock-{run}"},
        )
        response.raise_for_status()
        shifts = []
        for t in range(tills):
            shift_id = str(uuid.uuid4())
            # The store reaches orders through identity's events: a fresh stack may not have
            # delivered it yet (422 unknown_store), so wait for it as for the catalog below.
            deadline = time.monotonic() + 60
            while True:
                response = await orders.post(
                    "/v1/shifts",
                    json={
                        "id": shift_id,
                        "store_id": store_id,
                        "till_id": f"bench-{run}-{t}",
                        "opening_float": {"amount": 0, "currency": "CNY"},
                        "opened_at": (datetime.now(UTC) - timedelta(hours=8)).isoformat(),
                    },
                    headers={**cashier, "Idempotency-Key": uuid.uuid4().hex},
                )
                if response.status_code != 422 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            if response.is_error:
                raise SystemExit(f"the shift was not opened: {response.text[:300]}")
            shifts.append(shift_id)
        # The catalog reaches orders through inventory's events: wait until it can be synced.
        deadline = time.monotonic() + 60
        while True:
            probe = await orders.post(
                "/v1/orders/sync",
                json={
                    "store_id": store_id,
                    "till_id": f"bench-{run}-0",
                    "orders": [order(products, shifts[0], datetime.now(UTC))],
                },
                headers={**cashier, "Idempotency-Key": uuid.uuid4().hex},
            )
            if probe.status_code == 200 and probe.json()["created"] == 1:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the catalog never reached orders: {probe.text[:300]}")
            await asyncio.sleep(0.5)
        return cashier, store_id, products, shifts


async def run_till(
    stack: Stack,
    cashier: dict[str, str],
    store_id: str,
    till_id: str,
    batches: list[list[dict[str, Any]]],
    latencies: list[float],
    counts: dict[str, int],
) -> None:
    async with stack.client("orders") as orders:
        for batch in batches:
            started = time.monotonic()
            response = await orders.post(
                "/v1/orders/sync",
                json={"store_id": store_id, "till_id": till_id, "orders": batch},
                headers={**cashier, "Idempotency-Key": uuid.uuid4().hex},
            )
            latencies.append(time.monotonic() - started)
            if response.status_code != 200:
                counts["failed"] += len(batch)
                print(f"  batch failed {response.status_code}: {response.text[:200]}")
                continue
            body = response.json()
            for status in ("created", "already_synced", "rejected"):
                counts[status] += body[status]


async def downstream(stack: Stack, order_ids: list[str], since: float) -> dict[str, float]:
    """Seconds after ``since`` (monotonic) until each kind of effect covers every order."""
    ids = [uuid.UUID(o) for o in order_ids]
    checks = {
        "payments recorded": (
            "countertop_payments",
            "SELECT count(DISTINCT order_id) FROM payments WHERE order_id = ANY($1)",
        ),
        "stock deducted": (
            "countertop_inventory",
            "SELECT count(DISTINCT reference) FROM stock_movements "
            "WHERE reference = ANY($1::uuid[]::text[]) AND quantity < 0",
        ),
    }
    done: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(done) < len(checks) and time.monotonic() < deadline:
        for name, (db, sql) in checks.items():
            if name in done:
                continue
            conn = await asyncpg.connect(_database_url(stack.postgres_url, db))
            try:
                found = await conn.fetchval(sql, ids)
            finally:
                await conn.close()
            if found >= len(ids):
                done[name] = time.monotonic() - since
        await asyncio.sleep(0.25)
    for name in checks:
        done.setdefault(name, float("nan"))
    return done


async def main(args: argparse.Namespace) -> None:
    stack = Stack()
    cashier, store_id, products, shifts = await prepare(stack, args.tills)
    start_day = datetime.now(UTC) - timedelta(hours=7)
    plans: list[list[list[dict[str, Any]]]] = []
    for t in range(args.tills):
        plans.append(
            [
                [
                    order(products, shifts[t], start_day + timedelta(seconds=b * args.size + i))
                    for i in range(args.size)
                ]
                for b in range(args.batches)
            ]
        )
    order_ids = [o["id"] for plan in plans for batch in plan for o in batch]
    root = _stack_root(SERVICES_BY_NAME["orders"].port(stack.env))
    cpu_before = _cpu(root)
    machine_before = _machine_busy()
    latencies: list[float] = []
    counts = {"created": 0, "already_synced": 0, "rejected": 0, "failed": 0}
    started = time.monotonic()
    await asyncio.gather(
        *(
            run_till(stack, cashier, store_id, f"till-{t}", plans[t], latencies, counts)
            for t in range(args.tills)
        )
    )
    synced = time.monotonic()
    effects = await downstream(stack, order_ids, synced)
    cpu_used = _cpu_delta(_cpu(root), cpu_before)
    machine_used = _machine_busy() - machine_before
    stack_seconds = time.monotonic() - started
    elapsed = synced - started
    print(f"orders: {len(order_ids)} in {args.tills} tills x {args.batches} batches of {args.size}")
    print(
        f"  created {counts['created']}, already {counts['already_synced']}, "
        f"rejected {counts['rejected']}, failed {counts['failed']}"
    )
    print(
        f"  sync: {counts['created'] / elapsed:.0f} orders/s over {elapsed:.1f} s; "
        f"batch p50 {pct(latencies, 0.5) * 1000:.0f} ms, p99 {pct(latencies, 0.99) * 1000:.0f} ms"
    )
    for name, seconds in effects.items():
        print(f"  {name}: every order {seconds:.1f} s after the last batch's answer")
    print(
        "  CPU ms per order: "
        + ", ".join(
            f"{g} {1000 * used / len(order_ids):.1f}" for g, used in sorted(cpu_used.items())
        )
    )
    rest = (machine_used - sum(cpu_used.values())) / stack_seconds
    print(
        f"  the rest of the machine kept {rest:.2f} cores busy meanwhile "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    # The same batches again under new keys: every order is found already synced.
    counts_again = {"created": 0, "already_synced": 0, "rejected": 0, "failed": 0}
    again_latencies: list[float] = []
    started = time.monotonic()
    await asyncio.gather(
        *(
            run_till(stack, cashier, store_id, f"till-{t}", plans[t], again_latencies, counts_again)
            for t in range(args.tills)
        )
    )
    elapsed = time.monotonic() - started
    print(
        f"  resend: {counts_again['already_synced'] / elapsed:.0f} orders/s already synced, "
        f"created {counts_again['created']}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tills", type=int, default=2)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--start", action="store_true", help="start a stack for the run")
    arguments = parser.parse_args()
    if arguments.start:
        with started_stack():
            asyncio.run(main(arguments))
    else:
        asyncio.run(main(arguments))
