"""A till offline for a whole day, end to end, on the real PostgreSQL and broker.

The till opened its shift and sold 300 orders without a network: cash with change and QR
payments its terminal completed, one order for a member, one refund given back in cash with
the item returned. Back online, it syncs the day in two batches; the first batch is sent again
(a timeout on the till's side), and while the second batch goes up a second till sends an
overlapping batch at the same moment. Afterwards the manager refunds one more item through
payments, the cashier closes the shift one yuan short, and the day is read: orders, payments,
stock, points, the shift's over/short and the day's report must be exact to the fen.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from orders.models import CatalogProduct
from orders.models import Member as OrdersMember
from orders.models import Store as OrdersStore
from payments.models import Payment
from payments.models import Refund as PaymentRefund

from .conftest import System, wait_for

pytestmark = pytest.mark.timeout(300)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 3)
CURRENCY = "CNY"
FLOAT = 50_000
PRODUCTS: dict[str, dict[str, Any]] = {
    "noodles": {"sku": "OFF-NDL", "name": "Beef noodles", "price": 2800, "tax_rate_bps": 600},
    "tea": {"sku": "OFF-TEA", "name": "Jasmine tea", "price": 1200, "tax_rate_bps": 600},
    "cola": {"sku": "OFF-COLA", "name": "Cola 330 ml", "price": 500, "tax_rate_bps": 1300},
}
RECEIVED = {"noodles": 500, "tea": 500, "cola": 500}


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": CURRENCY}


def at(minutes_after_opening: int) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, 8, 0, tzinfo=SHANGHAI) + timedelta(
        minutes=minutes_after_opening
    )


def half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def tax_of(total: int, rate_bps: int) -> int:
    """orders.md: tax included in a line = round_half_up(total * rate / (10000 + rate))."""
    return half_up(total * rate_bps, 10_000 + rate_bps)


async def test_a_day_offline(system: System) -> None:
    merchant = await system.onboard()
    hq, manager, cashier = merchant.hq, merchant.manager, merchant.cashier
    store = merchant.store_id
    orders_api, payments_api = system.orders.client, system.payments.client

    async def store_known() -> bool:
        status = await system.orders.scalar(
            sa.select(OrdersStore.status).where(OrdersStore.store_id == uuid.UUID(store))
        )
        return bool(status == "active")

    await wait_for(store_known, "orders learns identity's store")

    # --- the morning, still online: catalog, stock, a member, the shift ----------------------
    products: dict[str, str] = {}
    for name, spec in PRODUCTS.items():
        response = await system.inventory.client.post(
            "/v1/products",
            json={
                "sku": spec["sku"],
                "name": spec["name"],
                "price": cny(spec["price"]),
                "cost": cny(spec["price"] // 4),
                "tax_rate_bps": spec["tax_rate_bps"],
            },
            headers={**hq.headers, "Idempotency-Key": f"product-{name}-{merchant.id}"},
        )
        assert response.status_code == 201, response.text
        products[name] = response.json()["id"]
    received = await system.inventory.client.post(
        f"/v1/stores/{store}/stock-in",
        json={
            "document": "GRN-OFFLINE-1",
            "occurred_at": at(-60).isoformat(),
            "lines": [{"product_id": products[n], "quantity": q} for n, q in RECEIVED.items()],
        },
        headers={**manager.headers, "Idempotency-Key": f"grn-{merchant.id}"},
    )
    assert received.status_code == 201, received.text

    async def catalog_replicated() -> bool:
        rows = await system.orders.scalar(
            sa.select(sa.func.count())
            .select_from(CatalogProduct)
            .where(CatalogProduct.merchant_id == uuid.UUID(merchant.id))
        )
        return bool(rows == len(PRODUCTS))

    await wait_for(catalog_replicated, "the catalog reaches orders")
    registered = await system.members.client.post(
        "/v1/members",
        json={"phone": "+86 139-0013-9000", "name": "Li Lei"},
        headers=cashier.headers,
    )
    assert registered.status_code == 201, registered.text
    member_id = registered.json()["id"]

    async def member_known() -> bool:
        known = await system.orders.scalar(
            sa.select(OrdersMember.member_id).where(
                OrdersMember.merchant_id == uuid.UUID(merchant.id),
                OrdersMember.member_id == uuid.UUID(member_id),
            )
        )
        return known is not None

    await wait_for(member_known, "orders learns the member")
    rule = (await system.members.client.get("/v1/points-rule", headers=hq.headers)).json()

    shift_id = str(uuid.uuid4())
    opened = await orders_api.post(
        "/v1/shifts",
        json={
            "id": shift_id,
            "store_id": store,
            "till_id": "till-1",
            "opening_float": cny(FLOAT),
            "opened_at": at(0).isoformat(),
        },
        headers={**cashier.headers, "Idempotency-Key": f"shift-{shift_id}"},
    )
    assert opened.status_code == 201, opened.text

    # --- the day offline: 300 orders on the till ----------------------------------------------
    rng = random.Random(20260303)
    day_orders: list[dict[str, Any]] = []
    sold: Counter[str] = Counter()
    totals: dict[str, int] = {}
    tax_by_rate: Counter[int] = Counter()
    cash_taken = qr_taken = 0
    member_order = refunded_offline = ""
    for i in range(300):
        names = rng.sample(sorted(PRODUCTS), rng.randint(1, 3))
        lines = []
        total = 0
        for name in names:
            quantity = rng.randint(1, 3)
            price = PRODUCTS[name]["price"]
            lines.append(
                {"product_id": products[name], "quantity": quantity, "unit_price": cny(price)}
            )
            sold[name] += quantity
            total += price * quantity
            tax_by_rate[PRODUCTS[name]["tax_rate_bps"]] += tax_of(
                price * quantity, PRODUCTS[name]["tax_rate_bps"]
            )
        order_id = str(uuid.uuid4())
        totals[order_id] = total
        if i % 3 == 2:
            tender = {
                "payment_id": str(uuid.uuid4()),
                "method": "wechat_pay",
                "amount": cny(total),
                "provider_reference": f"4200{i:08d}",
            }
            qr_taken += total
        else:
            tender = {
                "payment_id": str(uuid.uuid4()),
                "method": "cash",
                "amount": cny(total),
                "tendered": cny(total + (100 - total % 100) % 100),
            }
            cash_taken += total
        order: dict[str, Any] = {
            "id": order_id,
            "channel": "pos",
            "occurred_at": at(i * 2 + 1).isoformat(),
            "shift_id": shift_id,
            "lines": lines,
            "tenders": [tender],
        }
        if i == 7:
            order["member_id"] = member_id
            member_order = order_id
        day_orders.append(order)
    # Order 12 (cash) gets one unit of its first line back, in cash, later that day.
    refund_order = day_orders[12]
    refunded_offline = refund_order["id"]
    first_line = refund_order["lines"][0]
    offline_refund_amount = first_line["unit_price"]["amount"]
    refund_order["refunds"] = [
        {
            "refund_id": str(uuid.uuid4()),
            "payment_id": refund_order["tenders"][0]["payment_id"],
            "amount": cny(offline_refund_amount),
            "returned_lines": [{"product_id": first_line["product_id"], "quantity": 1}],
            "reason": "spilled",
            "occurred_at": at(200).isoformat(),
        }
    ]
    returned: Counter[str] = Counter()
    names_by_id = {v: k for k, v in products.items()}
    returned[names_by_id[first_line["product_id"]]] += 1
    assert refund_order["tenders"][0]["method"] == "cash"

    # --- back online: sync ----------------------------------------------------------------------
    async def sync(till: str, batch: list[dict[str, Any]], key: str) -> dict[str, Any]:
        response = await orders_api.post(
            "/v1/orders/sync",
            json={"store_id": store, "till_id": till, "orders": batch},
            headers={**cashier.headers, "Idempotency-Key": key},
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    first = await sync("till-1", day_orders[:200], "batch-1")
    assert first["created"] == 200, first["results"][:3]
    # The till never heard the answer and sends the batch again, then under a new key.
    replayed = await sync("till-1", day_orders[:200], "batch-1")
    assert replayed == first
    again = await sync("till-1", day_orders[:200], "batch-1-after-restart")
    assert again["already_synced"] == 200
    # The second batch, and at the same moment till 2 sends fifty of those orders with ten of
    # its own (taken by till 1's cashier on till 2, in till 1's shift).
    till2_orders = []
    for j in range(10):
        product = products["tea"]
        order_id = str(uuid.uuid4())
        till2_orders.append(
            {
                "id": order_id,
                "occurred_at": at(100 + j).isoformat(),
                "shift_id": shift_id,
                "lines": [{"product_id": product, "quantity": 1, "unit_price": cny(1200)}],
                "tenders": [
                    {"payment_id": str(uuid.uuid4()), "method": "cash", "amount": cny(1200)}
                ],
            }
        )
        totals[order_id] = 1200
        sold["tea"] += 1
        tax_by_rate[600] += tax_of(1200, 600)
        cash_taken += 1200
    second, overlapping = await asyncio.gather(
        sync("till-1", day_orders[200:], "batch-2"),
        sync("till-2", day_orders[250:] + till2_orders, "till-2-batch-1"),
    )
    assert second["created"] + overlapping["created"] == 110
    assert second["already_synced"] + overlapping["already_synced"] == 50
    assert second["rejected"] == overlapping["rejected"] == 0
    numbers = {
        r["order"]["number"]
        for result in (first, second, overlapping)
        for r in result["results"]
        if r["status"] == "created"
    }
    assert len(numbers) == 310

    # --- the downstream effects, once -----------------------------------------------------------
    expected_stock = {name: RECEIVED[name] - sold[name] + returned[name] for name in PRODUCTS}

    async def on_hand() -> dict[str, int]:
        levels = {}
        for name in PRODUCTS:
            response = await system.inventory.client.get(
                f"/v1/stores/{store}/stock/{products[name]}", headers=manager.headers
            )
            levels[name] = response.json()["on_hand"]
        return levels

    async def stock_is(expected: dict[str, int]) -> bool:
        return await on_hand() == expected

    await wait_for(lambda: stock_is(expected_stock), "the day's sales leave the shelf")

    merchant_uuid = uuid.UUID(merchant.id)

    async def payments_recorded(count: int, captured: int, refunded: int) -> bool:
        row = await system.payments.scalar(
            sa.select(
                sa.func.concat(
                    sa.func.count(),
                    "/",
                    sa.func.coalesce(sa.func.sum(Payment.amount), 0),
                    "/",
                    sa.func.coalesce(sa.func.sum(Payment.refunded_amount), 0),
                )
            ).where(Payment.merchant_id == merchant_uuid)
        )
        return bool(row == f"{count}/{captured}/{refunded}")

    await wait_for(
        lambda: payments_recorded(310, cash_taken + qr_taken, offline_refund_amount),
        "payments records every offline tender and the offline refund",
    )
    qr = await system.payments.scalar(
        sa.select(sa.func.count()).where(
            Payment.merchant_id == merchant_uuid,
            Payment.method == "wechat_pay",
            Payment.provider_reference.is_not(None),
        )
    )
    assert qr == 100

    member_total = totals[member_order]
    awarded = int(member_total * rule["points_per_unit"] // rule["unit_amount"])

    async def points_are(balance: int) -> bool:
        response = await system.members.client.get(
            f"/v1/members/{member_id}/points", headers=cashier.headers
        )
        return bool(response.json()["balance"] == balance)

    await wait_for(lambda: points_are(awarded), "the member's points, once")

    # --- a refund after the sync: one unit of order 22 comes back through payments -----------
    after = day_orders[22]
    after_line = after["lines"][0]
    after_amount = after_line["unit_price"]["amount"]
    assert after["tenders"][0]["method"] == "cash"
    refund = await payments_api.post(
        f"/v1/payments/{after['tenders'][0]['payment_id']}/refunds",
        json={
            "amount": cny(after_amount),
            "returned_lines": [{"product_id": after_line["product_id"], "quantity": 1}],
            "reason": "wrong order",
        },
        headers={**manager.headers, "Idempotency-Key": f"refund-after-{after['id']}"},
    )
    assert refund.status_code == 201, refund.text
    expected_stock[names_by_id[after_line["product_id"]]] += 1
    await wait_for(lambda: stock_is(expected_stock), "the item refunded online is back")

    async def order_status(order_id: str, status: str) -> bool:
        response = await orders_api.get(f"/v1/orders/{order_id}", headers=cashier.headers)
        return bool(response.json()["status"] == status)

    await wait_for(lambda: order_status(after["id"], "partially_refunded"), "order 22 refunded")
    await wait_for(
        lambda: payments_recorded(310, cash_taken + qr_taken, offline_refund_amount + after_amount),
        "payments holds both refunds",
    )
    offline_refund_row = await system.payments.scalar(
        sa.select(PaymentRefund.amount).where(
            PaymentRefund.id == uuid.UUID(refund_order["refunds"][0]["refund_id"])
        )
    )
    assert offline_refund_row == offline_refund_amount

    # --- the shift closes one yuan short ----------------------------------------------------------
    cash_expected = FLOAT + cash_taken - offline_refund_amount - after_amount
    closed = await orders_api.post(
        f"/v1/shifts/{shift_id}/close",
        json={
            "counted": [
                {"method": "cash", "amount": cny(cash_expected - 100)},
                {"method": "wechat_pay", "amount": cny(qr_taken)},
            ]
        },
        headers=cashier.headers,
    )
    assert closed.status_code == 200, closed.text
    shift = closed.json()
    figures = {f["method"]: f for f in shift["by_method"]}
    assert figures["cash"]["expected"] == cny(cash_expected)
    assert figures["cash"]["over_short"] == cny(-100)
    assert figures["wechat_pay"]["expected"] == cny(qr_taken)
    assert figures["wechat_pay"]["over_short"] == cny(0)
    assert shift["order_count"] == 310
    assert shift["over_short"] == cny(-100)

    # --- the day's report, against payments' ledger -----------------------------------------------
    day = DAY.isoformat()
    report = await orders_api.get(
        "/v1/reports/sales",
        params={"business_day_from": day, "business_day_to": day, "store_id": store},
        headers=manager.headers,
    )
    assert report.status_code == 200, report.text
    summary = report.json()["summary"]
    net = sum(totals.values())
    assert summary["order_count"] == 310
    assert summary["net"] == cny(net)
    assert summary["discounts"] == cny(0)
    assert summary["refunds"] == cny(offline_refund_amount + after_amount)
    assert summary["late_arrivals"] == 310
    assert summary["price_mismatches"] == 0
    assert {t["rate_bps"]: t["tax"]["amount"] for t in summary["tax_by_rate"]} == dict(tax_by_rate)
    by_method = {m["method"]: m for m in report.json()["by_method"]}
    assert by_method["cash"]["captured"] == cny(cash_taken)
    assert by_method["wechat_pay"]["captured"] == cny(qr_taken)
    assert by_method["cash"]["refunded"] == cny(offline_refund_amount + after_amount)
    ledger = await payments_api.get(
        "/v1/payments/figures",
        params={"business_day_from": day, "business_day_to": day, "store_id": store},
        headers=manager.headers,
    )
    assert ledger.status_code == 200, ledger.text
    (currency,) = ledger.json()["currencies"]
    for line in currency["by_method"]:
        assert by_method[line["method"]]["captured"] == line["captured"]
        assert by_method[line["method"]]["refunded"] == line["refunded"]

    # The refunded-offline order and the member's order as the server holds them.
    held = (await orders_api.get(f"/v1/orders/{refunded_offline}", headers=cashier.headers)).json()
    assert held["status"] == "partially_refunded"
    assert held["business_day"] == day
    assert held["late"] is True
    held_member = (
        await orders_api.get(f"/v1/orders/{member_order}", headers=cashier.headers)
    ).json()
    assert held_member["member_id"] == member_id
    assert held_member["status"] == "paid"

    # Nothing was doubled: a last resend of every batch changes nothing.
    final = await sync("till-1", day_orders[:200], "batch-1-final")
    assert final["already_synced"] == 200
    await wait_for(lambda: stock_is(expected_stock), "stock unchanged by the resend")
    state = await orders_api.get(
        "/v1/orders/sync/state",
        params={"store_id": store, "till_id": "till-1"},
        headers=cashier.headers,
    )
    assert state.status_code == 200, state.text
    assert sum(d["orders"] for d in state.json()["days"]) == 310
    assert await system.dead_letters(merchant.id) == []
