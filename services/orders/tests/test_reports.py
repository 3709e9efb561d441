"""The sales report and the month's tax: what sold on a range of business days, paid and
refunded by method (captures on cancelled orders included, as payments counts them), by hour
in the store's timezone, channel, product and cashier; scoped to the caller's merchant and
stores; and the order list's filters."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from contracts.events.inventory import ProductUpdated
from contracts.events.payments import PaymentRefunded
from contracts.money import Money
from servicekit.testing.wait import eventually

from .conftest import MANAGER, T0, Harness, auth_headers, envelope

READER = MANAGER | {"reports:read"}
DAY = T0.date().isoformat()  # T0 is 20:00 in Shanghai: the same calendar day.


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def tax_in(total: int, rate_bps: int) -> int:
    """The tax a tax-inclusive ``total`` holds, rounded half up (worked out independently)."""
    exact = total * rate_bps / (10_000 + rate_bps)
    return int(exact + 0.5)


async def sold(
    harness: Harness,
    merchant: uuid.UUID,
    store: uuid.UUID,
    lines: list[dict[str, Any]],
    *,
    method: str | None = "cash",
    at: Any = T0,
) -> dict[str, Any]:
    response = await harness.place(merchant, store, lines, occurred_at=at.isoformat())
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    if method is not None:
        await harness.pay(merchant, store, order["id"], order["total"]["amount"], method=method)
        order = await harness.wait_status(merchant, order["id"], "paid")
    return order


async def refund(
    harness: Harness,
    merchant: uuid.UUID,
    store: uuid.UUID,
    order_id: str,
    payment_id: uuid.UUID,
    amount: int,
    method: str,
) -> None:
    event = PaymentRefunded(
        refund_id=uuid.uuid4(),
        payment_id=payment_id,
        order_id=uuid.UUID(order_id),
        store_id=store,
        method=method,  # type: ignore[arg-type]
        amount=Money.of(amount, "CNY"),
        fee_refunded=Money.of(0, "CNY"),
    )
    await harness.publish(envelope(event, merchant, payment_id, "payments"))

    async def recorded() -> bool:
        order = await harness.order(merchant, order_id)
        return any(r["amount"] == cny(amount) for r in order["refunds"])

    await eventually(recorded, timeout=10.0)


async def report(
    harness: Harness, merchant: uuid.UUID, day_from: str = DAY, day_to: str = DAY, **params: str
) -> dict[str, Any]:
    response = await harness.client.get(
        "/v1/reports/sales",
        params={"business_day_from": day_from, "business_day_to": day_to, **params},
        headers=auth_headers(merchant, READER),
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_days_sales_by_method_hour_channel_and_product(harness: Harness) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    noodles = await harness.seed_product(merchant, price=1000, name="Noodles")
    tea = await harness.seed_product(merchant, price=2500, name="Tea")

    first = await sold(harness, merchant, store, [{"product_id": str(noodles), "quantity": 2}])
    wechat_payment = uuid.uuid4()
    second_placed = await harness.place(
        merchant,
        store,
        [{"product_id": str(tea), "quantity": 1, "discount": cny(400)}],
        channel="mini_program",
        occurred_at=(T0 + timedelta(hours=1)).isoformat(),
    )
    second = second_placed.json()
    await harness.pay(
        merchant, store, second["id"], 2100, method="wechat_pay", payment_id=wechat_payment
    )
    await harness.wait_status(merchant, second["id"], "paid")
    await refund(harness, merchant, store, second["id"], wechat_payment, 700, "wechat_pay")
    # Placed and never paid: not a sale.
    await sold(harness, merchant, store, [{"product_id": str(noodles), "quantity": 5}], method=None)
    # The day before in Shanghai.
    await sold(
        harness,
        merchant,
        store,
        [{"product_id": str(noodles), "quantity": 1}],
        at=T0 - timedelta(days=1),
    )
    # Cancelled, then a capture arrives and payments gives it back: money that moved, no sale.
    cancelled = await sold(
        harness, merchant, store, [{"product_id": str(tea), "quantity": 1}], method=None
    )
    cancel = await harness.client.post(
        f"/v1/orders/{cancelled['id']}/cancel", headers=auth_headers(merchant)
    )
    assert cancel.status_code == 200, cancel.text
    late_capture = uuid.uuid4()
    await harness.pay(
        merchant, store, cancelled["id"], 2500, method="alipay", payment_id=late_capture
    )
    await refund(harness, merchant, store, cancelled["id"], late_capture, 2500, "alipay")
    # A late capture on a failed payment comes back on its own: no tender, so it nets out.
    await refund(harness, merchant, store, cancelled["id"], uuid.uuid4(), 300, "unionpay")
    # Another merchant selling in a store of the same id on the same day.
    stranger = uuid.uuid4()
    stranger_noodles = await harness.seed_product(stranger, price=9900)
    await sold(harness, stranger, store, [{"product_id": str(stranger_noodles), "quantity": 1}])

    day = await report(harness, merchant)

    summary = day["summary"]
    assert summary["order_count"] == 2
    assert summary["gross"] == cny(2000 + 2500)
    assert summary["discounts"] == cny(400)
    assert summary["net"] == cny(4100)
    assert summary["refunds"] == cny(700)
    assert summary["refund_count"] == 1
    assert summary["net_after_refunds"] == cny(3400)
    assert summary["average_ticket"] == cny(2050)
    assert summary["late_arrivals"] == 0
    tax = tax_in(2000, 600) + tax_in(2100, 600)
    assert summary["tax"] == cny(tax)
    assert summary["tax_by_rate"] == [
        {"rate_bps": 600, "sales": cny(4100), "tax": cny(tax), "net_of_tax": cny(4100 - tax)}
    ]
    methods = {m["method"]: m for m in day["by_method"]}
    assert methods["cash"]["captured"] == cny(2000)
    assert methods["cash"]["refunded"] == cny(0)
    assert methods["wechat_pay"]["captured"] == cny(2100)
    assert methods["wechat_pay"]["refunded"] == cny(700)
    assert methods["wechat_pay"]["net"] == cny(1400)
    assert methods["alipay"]["captured"] == cny(2500)
    assert methods["alipay"]["refunded"] == cny(2500)
    assert set(methods) == {"cash", "wechat_pay", "alipay"}
    # 12:00 and 13:00 UTC are 20:00 and 21:00 in Shanghai.
    assert [(h["hour"], h["order_count"], h["net"]) for h in day["by_hour"]] == [
        (20, 1, cny(2000)),
        (21, 1, cny(2100)),
    ]
    channels = {c["channel"]: c for c in day["by_channel"]}
    assert channels["pos"]["net"] == cny(2000)
    assert channels["mini_program"]["discounts"] == cny(400)
    by_quantity = day["top_products_by_quantity"]
    assert [(p["name"], p["quantity"]) for p in by_quantity] == [("Noodles", 2), ("Tea", 1)]
    by_revenue = day["top_products_by_revenue"]
    assert [(p["name"], p["revenue"]) for p in by_revenue] == [
        ("Tea", cny(2100)),
        ("Noodles", cny(2000)),
    ]
    assert by_revenue[0]["cost"] is None
    assert by_revenue[0]["margin"] is None
    assert sum(c["order_count"] for c in day["by_cashier"]) == 2
    assert day["late_arrivals"] == []

    both_days = await report(harness, merchant, (T0 - timedelta(days=1)).date().isoformat(), DAY)
    assert both_days["summary"]["order_count"] == 3
    assert both_days["summary"]["net"] == cny(5100)
    assert first["business_day"] == DAY

    month = await harness.client.get(
        "/v1/reports/tax", params={"month": "2026-03"}, headers=auth_headers(merchant, READER)
    )
    assert month.status_code == 200, month.text
    assert month.json()["days"] == [
        {
            "business_day": DAY,
            "rate_bps": 600,
            "sales": cny(4100),
            "tax": cny(tax),
            "net_of_tax": cny(4100 - tax),
        }
    ]
    assert month.json()["totals"][0]["tax"] == cny(tax)
    february = await harness.client.get(
        "/v1/reports/tax", params={"month": "2026-02"}, headers=auth_headers(merchant, READER)
    )
    assert february.json()["totals"] == [
        {
            "rate_bps": 600,
            "sales": cny(1000),
            "tax": cny(tax_in(1000, 600)),
            "net_of_tax": cny(1000 - tax_in(1000, 600)),
        }
    ]


async def test_reports_are_scoped_and_refuse_bad_requests(harness: Harness) -> None:
    merchant, mine, theirs = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    product = await harness.seed_product(merchant, price=300)
    await sold(harness, merchant, mine, [{"product_id": str(product), "quantity": 1}])
    await sold(harness, merchant, theirs, [{"product_id": str(product), "quantity": 3}])

    manager = auth_headers(merchant, READER, store_ids=frozenset({mine}))
    seen = await harness.client.get(
        "/v1/reports/sales",
        params={"business_day_from": DAY, "business_day_to": DAY},
        headers=manager,
    )
    assert seen.json()["summary"]["net"] == cny(300)
    elsewhere = await harness.client.get(
        "/v1/reports/sales",
        params={"business_day_from": DAY, "business_day_to": DAY, "store_id": str(theirs)},
        headers=manager,
    )
    assert elsewhere.status_code == 404
    whole = await report(harness, merchant)
    assert whole["summary"]["net"] == cny(1200)
    one = await report(harness, merchant, store_id=str(theirs))
    assert one["summary"]["net"] == cny(900)
    nobody = await report(harness, uuid.uuid4())
    assert nobody["summary"]["order_count"] == 0
    assert nobody["summary"]["average_ticket"] == cny(0)

    cashier = await harness.client.get(
        "/v1/reports/sales",
        params={"business_day_from": DAY, "business_day_to": DAY},
        headers=auth_headers(merchant, MANAGER),
    )
    assert cashier.status_code == 403
    reversed_range = await harness.client.get(
        "/v1/reports/sales",
        params={"business_day_from": DAY, "business_day_to": "2026-02-01"},
        headers=auth_headers(merchant, READER),
    )
    assert reversed_range.status_code == 422
    assert reversed_range.json()["code"] == "invalid_range"
    unknown = await harness.client.get(
        "/v1/reports/sales",
        params={"business_day_from": DAY, "business_day_to": DAY, "currency": "ABC"},
        headers=auth_headers(merchant, READER),
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_currency"
    december = await harness.client.get(
        "/v1/reports/tax", params={"month": "9999-12"}, headers=auth_headers(merchant, READER)
    )
    assert december.status_code == 200, december.text
    assert december.json()["days"] == []
    for bad in (
        {"month": "2026-13"},
        {"month": "march"},
        {"month": "0000-01"},
        {"month": "2026-03", "currency": "x"},
        {"month": "2026-03", "currency": "ABC"},
    ):
        refused = await harness.client.get(
            "/v1/reports/tax", params=bad, headers=auth_headers(merchant, READER)
        )
        assert refused.status_code == 422, bad


async def test_order_list_filters(harness: Harness) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product = await harness.seed_product(merchant, price=500)
    today = await sold(harness, merchant, store, [{"product_id": str(product), "quantity": 1}])
    yesterday = await sold(
        harness,
        merchant,
        store,
        [{"product_id": str(product), "quantity": 1}],
        at=T0 - timedelta(days=1),
    )
    delivered = await harness.place(
        merchant, store, [{"product_id": str(product), "quantity": 1}], channel="delivery"
    )
    delivery = delivered.json()

    async def ids(**params: str) -> set[str]:
        response = await harness.client.get(
            "/v1/orders", params=params, headers=auth_headers(merchant)
        )
        assert response.status_code == 200, response.text
        return {o["id"] for o in response.json()["items"]}

    assert await ids(business_day_from=DAY, business_day_to=DAY) == {today["id"], delivery["id"]}
    assert await ids(business_day_to=yesterday["business_day"]) == {yesterday["id"]}
    assert await ids(number=today["number"]) == {today["id"]}
    assert await ids(number=today["number"], store_id=str(store)) == {today["id"]}
    assert await ids(channel="delivery") == {delivery["id"]}
    assert await ids(channel="pos", status="paid") == {today["id"], yesterday["id"]}
    assert await ids(cashier_id=today["cashier_id"]) == {
        today["id"],
        yesterday["id"],
        delivery["id"],
    }
    assert await ids(cashier_id=str(uuid.uuid4())) == set()
    assert await ids(source="offline") == set()
    assert await ids(late="true") == set()
    # The same store id and day give another merchant the same number: never its order.
    stranger = uuid.uuid4()
    stranger_product = await harness.seed_product(stranger, price=100)
    theirs = await sold(
        harness, stranger, store, [{"product_id": str(stranger_product), "quantity": 1}]
    )
    assert theirs["number"] == today["number"]
    assert await ids(number=theirs["number"]) == {today["id"]}

    for bad in (
        {"business_day_from": DAY, "business_day_to": "2026-01-01"},
        {"channel": "fax"},
        {"source": "carrier-pigeon"},
        {"business_day_from": "yesterday"},
    ):
        refused = await harness.client.get("/v1/orders", params=bad, headers=auth_headers(merchant))
        assert refused.status_code == 422, bad


async def test_a_late_offline_order_lands_in_its_day_flagged(harness: Harness) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    await harness.seed_store(merchant, store)
    product = await harness.seed_product(merchant, price=1000, name="Noodles")
    before = await report(harness, merchant)
    assert before["summary"]["order_count"] == 0

    order_id, payment_id = uuid.uuid4(), uuid.uuid4()
    # The till charged 9.00 where the catalog says 10.00, on a day long gone.
    batch = {
        "store_id": str(store),
        "till_id": "till-1",
        "orders": [
            {
                "id": str(order_id),
                "occurred_at": (T0 + timedelta(minutes=30)).isoformat(),
                "lines": [{"product_id": str(product), "quantity": 2, "unit_price": cny(900)}],
                "tenders": [{"payment_id": str(payment_id), "method": "cash", "amount": cny(1800)}],
            }
        ],
    }
    synced = await harness.client.post(
        "/v1/orders/sync",
        json=batch,
        headers={**auth_headers(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert synced.status_code == 200, synced.text
    [result] = synced.json()["results"]
    assert result["status"] == "created", result
    # Payments records the offline tender and announces it, as it does for every payment.
    await harness.pay(merchant, store, str(order_id), 1800, payment_id=payment_id)
    order = await harness.wait_status(merchant, str(order_id), "paid")
    assert order["late"] is True

    after = await report(harness, merchant)
    summary = after["summary"]
    assert summary["order_count"] == 1
    assert summary["net"] == cny(1800)
    assert summary["late_arrivals"] == 1
    assert summary["price_mismatches"] == 1
    [late] = after["late_arrivals"]
    assert late["order_id"] == str(order_id)
    assert late["number"] == order["number"]
    assert late["business_day"] == DAY
    assert [(h["hour"], h["order_count"]) for h in after["by_hour"]] == [(20, 1)]
    assert {m["method"]: m["captured"] for m in after["by_method"]} == {"cash": cny(1800)}
    listed = await harness.client.get(
        "/v1/orders", params={"source": "offline", "late": "true"}, headers=auth_headers(merchant)
    )
    assert [o["id"] for o in listed.json()["items"]] == [str(order_id)]


async def test_a_renamed_product_shows_its_latest_name(harness: Harness) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    product = await harness.seed_product(merchant, price=700, name="Zongzi")
    await sold(harness, merchant, store, [{"product_id": str(product), "quantity": 1}])
    renamed = ProductUpdated(
        product_id=product,
        version=2,
        sku=f"SKU-{product.hex[:8]}",
        name="Abalone zongzi",
        unit="each",
        price=Money.of(700, "CNY"),
        tax_rate_bps=600,
        status="active",
    )
    await harness.publish_applied(envelope(renamed, merchant, product, "inventory"))
    await sold(
        harness,
        merchant,
        store,
        [{"product_id": str(product), "quantity": 1}],
        at=T0 + timedelta(hours=1),
    )
    [top] = (await report(harness, merchant))["top_products_by_quantity"]
    assert top["name"] == "Abalone zongzi"
    assert top["quantity"] == 2
