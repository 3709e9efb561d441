"""The day's sales report against the payments ledger, after real checkouts through every
service: cash with change, QR payments the provider notifies, an order paid part by QR and
part in cash, a QR and a cash refund, a declined QR payment settled in cash and a cancelled
order. Orders' report (from the tenders and refunds it learnt through payments' events) and
payments' daily figures must agree to the fen, per method, and match what was rung up, before
and after every relay publishes its whole outbox a second time. The exports say the same."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from orders.models import CatalogProduct
from orders.models import Store as OrdersStore

from .conftest import System, wait_for
from .test_day_at_the_till import Till

pytestmark = pytest.mark.timeout(240)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 9)
PRICES = {"noodles": 2800, "tea": 1200}


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def at(hour: int, minute: int = 0) -> str:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=SHANGHAI).isoformat()


def tax_in(total: int, rate_bps: int) -> int:
    """docs/api/orders.md: tax included in a line, rounded half up once per line."""
    return (2 * total * rate_bps + 10_000 + rate_bps) // (2 * (10_000 + rate_bps))


async def test_the_days_report_matches_the_payments_ledger(system: System) -> None:
    merchant = await system.onboard()
    till = Till(system, merchant)
    hq, manager = merchant.hq, merchant.manager
    store = merchant.store_id

    async def store_known() -> bool:
        status = await system.orders.scalar(
            sa.select(OrdersStore.status).where(OrdersStore.store_id == uuid.UUID(store))
        )
        return bool(status == "active")

    await wait_for(store_known, "orders learns identity's store")
    response = await system.payments.client.put(
        "/v1/settlement/config", json={"fee_rate_bps": 60}, headers=hq.headers
    )
    assert response.status_code == 200, response.text
    for name, price in PRICES.items():
        created = await system.inventory.client.post(
            "/v1/products",
            json={"sku": name.upper(), "name": name, "price": cny(price)},
            headers=till.idempotent(hq, f"product-{name}-{merchant.id}"),
        )
        assert created.status_code == 201, created.text
        till.products[name] = created.json()["id"]

    async def catalog_replicated() -> bool:
        rows = await system.orders.scalar(
            sa.select(sa.func.count())
            .select_from(CatalogProduct)
            .where(CatalogProduct.merchant_id == uuid.UUID(merchant.id))
        )
        return bool(rows == len(PRICES))

    await wait_for(catalog_replicated, "the catalog reaches orders")

    def line(name: str, quantity: int) -> dict[str, Any]:
        return {"product_id": till.products[name], "quantity": quantity}

    # Cash with change.
    o1 = str(uuid.uuid4())
    await till.place(o1, [line("noodles", 2)], when=at(11, 5), member_id=None)
    cash1 = await till.pay(o1, f"p-{o1}", method="cash", amount=cny(5600), tendered=cny(6000))
    # QR, the provider notifying twice.
    o2 = str(uuid.uuid4())
    await till.place(o2, [line("tea", 3)], when=at(12, 30), member_id=None)
    qr2 = await till.pay(
        o2,
        f"p-{o2}",
        method="wechat_pay",
        amount=cny(3600),
        sandbox={"outcome": "succeed", "notify_times": 2},
    )
    # Part QR, part cash.
    o3 = str(uuid.uuid4())
    await till.place(o3, [line("noodles", 1), line("tea", 1)], when=at(12, 45), member_id=None)
    ali3 = await till.pay(
        o3, f"p-{o3}-a", method="alipay", amount=cny(2000), sandbox={"outcome": "succeed"}
    )
    await till.wait_payment(ali3["id"], "succeeded")
    await till.pay(o3, f"p-{o3}-c", method="cash", amount=cny(2000))
    # Declined QR, then cash.
    o4 = str(uuid.uuid4())
    await till.place(o4, [line("tea", 1)], when=at(18, 20), member_id=None)
    declined = await till.pay(
        o4, f"p-{o4}-q", method="alipay", amount=cny(1200), sandbox={"outcome": "decline"}
    )
    await till.wait_payment(declined["id"], "failed")
    await till.pay(o4, f"p-{o4}-c", method="cash", amount=cny(1200))
    # Placed, then cancelled: no sale, no money.
    o5 = str(uuid.uuid4())
    await till.place(o5, [line("noodles", 5)], when=at(19, 0), member_id=None)
    cancelled = await system.orders.client.post(
        f"/v1/orders/{o5}/cancel", headers=merchant.cashier.headers
    )
    assert cancelled.status_code == 200, cancelled.text

    await till.wait_payment(qr2["id"], "succeeded")
    for order_id, total in ((o1, 5600), (o2, 3600), (o3, 4000), (o4, 1200)):
        await till.wait_order(order_id, "paid", total)

    # The manager refunds part of the QR payment and part of the cash one.
    for payment, amount in ((qr2, 1200), (cash1, 800)):
        refunded = await system.payments.client.post(
            f"/v1/payments/{payment['id']}/refunds",
            json={"amount": cny(amount)},
            headers=till.idempotent(manager, f"refund-{payment['id']}"),
        )
        assert refunded.status_code == 201, refunded.text
    await till.wait_order(o2, "partially_refunded", 3600)
    await till.wait_order(o1, "partially_refunded", 5600)

    days = {"business_day_from": DAY.isoformat(), "business_day_to": DAY.isoformat()}

    async def report() -> dict[str, Any]:
        response = await system.orders.client.get(
            "/v1/reports/sales", params=days, headers=manager.headers
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def figures() -> dict[str, Any]:
        response = await system.payments.client.get(
            "/v1/payments/figures", params=days, headers=manager.headers
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    expected = {
        # method: (captured, refunded)
        "cash": (5600 + 2000 + 1200, 800),
        "wechat_pay": (3600, 1200),
        "alipay": (2000, 0),
    }

    def per_method(lines: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
        return {m["method"]: (m["captured"]["amount"], m["refunded"]["amount"]) for m in lines}

    async def books_agree() -> bool:
        ledger = (await figures())["currencies"]
        return bool(
            ledger
            and per_method(ledger[0]["by_method"]) == expected
            and per_method((await report())["by_method"]) == expected
        )

    await wait_for(books_agree, "report and ledger show every payment and refund")

    async def check_the_books() -> None:
        day, ledger = await report(), (await figures())["currencies"][0]
        assert per_method(day["by_method"]) == per_method(ledger["by_method"]) == expected
        summary = day["summary"]
        assert summary["order_count"] == 4
        assert summary["gross"] == cny(5600 + 3600 + 4000 + 1200)
        assert summary["net"] == cny(14_400)
        assert summary["refunds"] == cny(2000)
        assert summary["net_after_refunds"] == cny(12_400)
        assert summary["average_ticket"] == cny(3600)
        # What the ledger netted is what the report sold minus refunds.
        assert ledger["net"] == summary["net_after_refunds"]
        assert ledger["captured"] == summary["net"]
        rate = day["summary"]["tax_by_rate"][0]["rate_bps"]
        taxes = sum(tax_in(t, rate) for t in (5600, 3600, PRICES["noodles"], PRICES["tea"], 1200))
        assert summary["tax"] == cny(taxes)
        assert [(h["hour"], h["order_count"]) for h in day["by_hour"]] == [
            (11, 1),
            (12, 2),
            (18, 1),
        ]
        assert ledger["fees"] == cny(22 + 12)  # 0.6 % of 36.00 and of 20.00, half up
        assert day["by_shift"] == []

    await check_the_books()

    # Every relay publishes its whole outbox again: nothing counts twice.
    await system.replay_everything()
    await wait_for(system.drained, "the replayed outboxes are consumed")
    await check_the_books()

    exported = await system.payments.client.get(
        "/v1/payments/export", params=days, headers=manager.headers
    )
    assert exported.status_code == 200, exported.text
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    payment_rows = rows[2 : rows.index([])]
    # Every payment attempt of the day, the declined one included.
    assert len(payment_rows) == 6
    orders_export = await system.orders.client.get(
        "/v1/exports/orders", params=days, headers=manager.headers
    )
    lines = list(csv.reader(io.StringIO(orders_export.content.decode("utf-8-sig"))))
    # One row per line of the five orders, the cancelled one included.
    assert len(lines) - 1 == 6
