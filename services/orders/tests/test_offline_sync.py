"""Offline batch sync, order numbers, tax on lines and cashier shifts."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from orders.models import Order, OrderLine, Tender
from orders.order.tax import line_tax

from .conftest import Harness

NOW = datetime.now(UTC)


def _order(
    product_id: uuid.UUID,
    *,
    price: int = 1000,
    quantity: int = 1,
    occurred_at: datetime | None = None,
    cash: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    total = price * quantity
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "lines": [
            {
                "product_id": str(product_id),
                "quantity": quantity,
                "unit_price": {"amount": price, "currency": "CNY"},
            }
        ],
        "occurred_at": (occurred_at or NOW - timedelta(minutes=5)).isoformat(),
        **extra,
    }
    if cash:
        body["tenders"] = [
            {
                "payment_id": str(uuid.uuid4()),
                "method": "cash",
                "amount": {"amount": total, "currency": "CNY"},
            }
        ]
    return body


async def _sync(
    harness: Harness,
    merchant: uuid.UUID,
    store: uuid.UUID,
    orders: list[dict[str, Any]],
    till: str = "till-1",
) -> dict[str, Any]:
    response = await harness.client.post(
        "/v1/orders/sync",
        json={"store_id": str(store), "till_id": till, "orders": orders},
        headers={**harness.auth(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_tax_is_included_and_rounded_half_up() -> None:
    assert line_tax(1000, 600) == 57  # 56.60 -> 57
    assert line_tax(1060, 600) == 60
    assert line_tax(0, 1300) == 0
    assert line_tax(1000, 0) == 0
    assert line_tax(113, 1300) == 13


async def test_online_orders_get_numbers_tax_and_the_tills_shift(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(merchant, price=1000)
    shift_id = uuid.uuid4()
    opened = await harness.client.post(
        "/v1/shifts",
        json={
            "id": str(shift_id),
            "store_id": str(store),
            "till_id": "till-1",
            "opening_float": {"amount": 20000, "currency": "CNY"},
        },
        headers={**harness.auth(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert opened.status_code == 201, opened.text
    first = await harness.place(
        merchant, store, [{"product_id": str(product), "quantity": 3}], till_id="till-1"
    )
    second = await harness.place(merchant, store, [{"product_id": str(product), "quantity": 1}])
    assert first.status_code == 201, first.text
    body = first.json()
    day = body["business_day"].replace("-", "")
    assert body["number"] == f"S{store.hex[:6]}-{day}-0001"
    assert second.json()["number"].endswith("-0002")
    assert body["shift_id"] == str(shift_id)
    assert body["lines"][0]["tax"] == {"amount": line_tax(3000, 600), "currency": "CNY"}
    assert body["tax_by_rate"] == [{"rate_bps": 600, "tax": {"amount": 170, "currency": "CNY"}}]
    assert second.json()["shift_id"] is None
    found = await harness.client.get(f"/v1/orders/{body['id']}", headers=harness.auth(merchant))
    assert found.json()["number"] == body["number"]
    placed = await harness.wait_events("orders.order.placed", merchant, 2)
    assert {e.payload["number"] for e in placed} == {body["number"], second.json()["number"]}


async def test_a_batch_twice_and_overlapping_batches_create_each_order_once(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(merchant, price=1000)
    batch = [_order(product, quantity=i + 1) for i in range(20)]
    first = await _sync(harness, merchant, store, batch)
    assert first["created"] == 20, first
    assert first["rejected"] == 0
    again = await _sync(harness, merchant, store, batch)
    assert again["already_synced"] == 20
    assert [r["order"]["number"] for r in again["results"]] == [
        r["order"]["number"] for r in first["results"]
    ]
    # Two tills at the same moment, sharing half of their orders.
    more = [_order(product) for _ in range(10)]
    left, right = batch[15:] + more[:5], more
    a, b = await asyncio.gather(
        _sync(harness, merchant, store, left, "till-1"),
        _sync(harness, merchant, store, right, "till-2"),
    )
    assert a["created"] + b["created"] == 10
    assert a["already_synced"] + b["already_synced"] == 10
    async with harness.database.transaction() as session:
        count, paid = (
            await session.execute(
                sa.select(sa.func.count(), sa.func.sum(Order.paid_total)).where(
                    Order.merchant_id == merchant
                )
            )
        ).one()
        numbers = (
            await session.execute(sa.select(Order.number).where(Order.merchant_id == merchant))
        ).scalars()
        tenders = await session.scalar(
            sa.select(sa.func.count()).select_from(Tender).where(Tender.merchant_id == merchant)
        )
    assert count == 30
    assert tenders == 30
    assert paid == sum(1000 * (i + 1) for i in range(20)) + 10 * 1000
    assert sorted(int(n.rsplit("-", 1)[1]) for n in numbers) == list(range(1, 31))
    assert await harness.outboxed("orders.order.placed", merchant) == 30
    assert await harness.outboxed("orders.order.paid", merchant) == 30
    assert await harness.outboxed("orders.order.offline_tendered", merchant) == 30


async def test_rejected_orders_leave_nothing_and_the_rest_goes_through(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(merchant, price=1000)
    good = _order(product)
    created_offline = _order(uuid.uuid4())
    stranger = _order(product, member_id=str(uuid.uuid4()))
    malformed = {**_order(product), "lines": [{"product_id": str(product), "quantity": -1}]}
    refunds_too_much = _order(product)
    refunds_too_much["refunds"] = [
        {
            "refund_id": str(uuid.uuid4()),
            "payment_id": refunds_too_much["tenders"][0]["payment_id"],
            "amount": {"amount": 5000, "currency": "CNY"},
            "occurred_at": NOW.isoformat(),
        }
    ]
    result = await _sync(
        harness, merchant, store, [good, created_offline, stranger, malformed, refunds_too_much]
    )
    statuses = [(r["status"], (r["problem"] or {}).get("code")) for r in result["results"]]
    assert statuses == [
        ("created", None),
        ("rejected", "validation_failed"),
        ("rejected", "unknown_member"),
        ("rejected", "validation_failed"),
        ("rejected", "validation_failed"),
    ]
    assert result["results"][1]["problem"]["errors"][0]["code"] == "unknown_product"
    assert result["results"][4]["problem"]["errors"][0]["code"] == "refund_exceeds_payment"
    async with harness.database.transaction() as session:
        orders = (
            await session.execute(sa.select(Order.id).where(Order.merchant_id == merchant))
        ).scalars()
        lines = await session.scalar(
            sa.select(sa.func.count())
            .select_from(OrderLine)
            .where(OrderLine.merchant_id == merchant)
        )
    assert [str(o) for o in orders] == [good["id"]]
    assert lines == 1
    conflicting = {**good, "lines": [{**good["lines"][0], "quantity": 2}]}
    again = await _sync(harness, merchant, store, [conflicting])
    assert again["results"][0]["problem"]["code"] == "order_id_conflict"


async def test_stored_value_and_points_are_never_taken_offline(harness: Harness) -> None:
    """Only members can debit them, online: a till that recorded one offline is told so."""
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(merchant, price=1000)
    bodies = []
    for method in ("stored_value", "points"):
        body = _order(product)
        body["tenders"][0].update(method=method, provider_reference=f"{method}-ref")
        bodies.append(body)
    result = await _sync(harness, merchant, store, bodies)
    assert [r["status"] for r in result["results"]] == ["rejected", "rejected"]
    codes = [{e["code"] for e in r["problem"]["errors"]} for r in result["results"]]
    assert "stored_value_offline" in codes[0], codes
    assert "points_offline" in codes[1], codes


async def test_a_broken_clock_is_refused_not_a_server_error(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(merchant, price=1000)
    ancient = {**_order(product), "occurred_at": "0001-01-01T00:00:00-05:00"}
    result = await _sync(harness, merchant, store, [ancient])
    (rejected,) = result["results"]
    assert rejected["problem"]["errors"][0]["code"] == "occurred_too_early"
    online = await harness.place(
        merchant,
        store,
        [{"product_id": str(product), "quantity": 1}],
        occurred_at="0001-01-01T00:00:00-05:00",
    )
    assert online.status_code == 422, online.text


async def test_prices_as_charged_are_kept_and_flagged(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(merchant, price=1000)
    result = await _sync(harness, merchant, store, [_order(product, price=900)])
    (created,) = result["results"]
    assert created["price_mismatches"] == 1
    assert created["order"]["total"] == {"amount": 900, "currency": "CNY"}
    assert created["order"]["status"] == "paid"
    order = await harness.order(merchant, created["order_id"])
    line = order["lines"][0]
    assert line["price_mismatch"] is True
    assert line["unit_price"]["amount"] == 900
    assert line["catalog_unit_price"]["amount"] == 1000


async def test_late_order_lands_in_its_day_and_shift_with_its_refund(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(merchant, price=1000)
    member = await harness.seed_member(merchant)
    yesterday = NOW - timedelta(days=1)
    shift_id = uuid.uuid4()
    headers = {**harness.auth(merchant), "Idempotency-Key": uuid.uuid4().hex}
    opened = await harness.client.post(
        "/v1/shifts",
        json={
            "id": str(shift_id),
            "store_id": str(store),
            "till_id": "till-9",
            "opening_float": {"amount": 10000, "currency": "CNY"},
            "opened_at": (yesterday - timedelta(hours=2)).isoformat(),
        },
        headers=headers,
    )
    assert opened.status_code == 201, opened.text
    closed = await harness.client.post(
        f"/v1/shifts/{shift_id}/close",
        json={
            "counted": [{"method": "cash", "amount": {"amount": 12000, "currency": "CNY"}}],
            "closed_at": (yesterday + timedelta(hours=2)).isoformat(),
        },
        headers=harness.auth(merchant),
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["over_short"] == {"amount": 2000, "currency": "CNY"}
    late = _order(product, quantity=3, occurred_at=yesterday, member_id=str(member))
    late["tenders"].append(
        {
            "payment_id": str(uuid.uuid4()),
            "method": "wechat_pay",
            "amount": {"amount": 1000, "currency": "CNY"},
            "provider_reference": "wx-4200001",
        }
    )
    late["tenders"][0]["amount"]["amount"] = 2000
    late["refunds"] = [
        {
            "refund_id": str(uuid.uuid4()),
            "payment_id": late["tenders"][0]["payment_id"],
            "amount": {"amount": 1000, "currency": "CNY"},
            "returned_lines": [{"product_id": str(product), "quantity": 1}],
            "occurred_at": (yesterday + timedelta(minutes=10)).isoformat(),
        }
    ]
    result = await _sync(harness, merchant, store, [late], till="till-9")
    (created,) = result["results"]
    assert created["status"] == "created", created
    order = created["order"]
    assert order["late"] is True
    assert order["source"] == "offline"
    assert order["shift_id"] == str(shift_id)
    assert (
        order["business_day"]
        == yesterday.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date().isoformat()
    )
    assert order["status"] == "partially_refunded"
    assert order["refunded_total"]["amount"] == 1000
    report = await harness.client.get(f"/v1/shifts/{shift_id}", headers=harness.auth(merchant))
    figures = {f["method"]: f for f in report.json()["by_method"]}
    assert figures["cash"]["expected"]["amount"] == 10000 + 2000 - 1000
    assert figures["cash"]["over_short"]["amount"] == 12000 - 11000
    assert figures["wechat_pay"]["tenders"]["amount"] == 1000
    refunded = await harness.wait_events("orders.order.refunded", merchant, 1)
    assert refunded[0].payload["returned_lines"] == [{"product_id": str(product), "quantity": 1}]
    offline = await harness.wait_events("orders.order.offline_tendered", merchant, 2)
    assert {e.payload["provider_reference"] for e in offline} == {None, "wx-4200001"}
    state = await harness.client.get(
        "/v1/orders/sync/state",
        params={"store_id": str(store), "till_id": "till-9"},
        headers=harness.auth(merchant),
    )
    assert state.status_code == 200, state.text
    assert state.json()["last_batch"]["created"] == 1
    assert state.json()["days"] == [
        {
            "business_day": order["business_day"],
            "orders": 1,
            "total": {"amount": 3000, "currency": "CNY"},
            "late": 1,
        }
    ]


async def test_another_tenant_cannot_sync_into_a_store_or_see_its_state(
    harness: Harness,
) -> None:
    merchant, other = uuid.uuid4(), uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(other, price=1000)
    response = await harness.client.post(
        "/v1/orders/sync",
        json={"store_id": str(store), "till_id": "t", "orders": [_order(product)]},
        headers={**harness.auth(other), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_store"


async def test_shift_rules_and_another_tenants_shift(harness: Harness) -> None:
    merchant, other = uuid.uuid4(), uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = await harness.seed_product(merchant, price=1000)
    shift_id = uuid.uuid4()
    body = {
        "id": str(shift_id),
        "store_id": str(store),
        "till_id": "till-5",
        "opening_float": {"amount": 5000, "currency": "CNY"},
    }

    async def open_shift(payload: dict[str, Any]) -> Any:
        return await harness.client.post(
            "/v1/shifts",
            json=payload,
            headers={**harness.auth(merchant), "Idempotency-Key": uuid.uuid4().hex},
        )

    assert (await open_shift(body)).status_code == 201
    again = await open_shift(body)
    assert again.status_code == 200
    changed = await open_shift({**body, "opening_float": {"amount": 1, "currency": "CNY"}})
    assert changed.json()["code"] == "shift_id_conflict"
    second = await open_shift({**body, "id": str(uuid.uuid4())})
    assert second.status_code == 409
    assert second.json()["code"] == "shift_already_open"
    negative = await open_shift({**body, "opening_float": {"amount": -1, "currency": "CNY"}})
    assert negative.status_code == 422
    # Another merchant neither sees the shift nor can book an order into it.
    hidden = await harness.client.get(f"/v1/shifts/{shift_id}", headers=harness.auth(other))
    assert hidden.status_code == 404
    other_store = await harness.seed_store(other)
    other_product = await harness.seed_product(other, price=1000)
    foreign = await _sync(
        harness, other, other_store, [_order(other_product, shift_id=str(shift_id))]
    )
    assert foreign["results"][0]["problem"]["code"] == "unknown_shift"
    # Close: cash must be counted; the same counts again answer the same, others are refused.
    close_url = f"/v1/shifts/{shift_id}/close"
    no_cash = await harness.client.post(
        close_url,
        json={"counted": [{"method": "card", "amount": {"amount": 0, "currency": "CNY"}}]},
        headers=harness.auth(merchant),
    )
    assert no_cash.status_code == 422
    counted = {"counted": [{"method": "cash", "amount": {"amount": 4900, "currency": "CNY"}}]}
    closed = await harness.client.post(close_url, json=counted, headers=harness.auth(merchant))
    assert closed.status_code == 200, closed.text
    assert closed.json()["over_short"] == {"amount": -100, "currency": "CNY"}
    repeated = await harness.client.post(close_url, json=counted, headers=harness.auth(merchant))
    assert repeated.json() == closed.json()
    recount = {"counted": [{"method": "cash", "amount": {"amount": 5000, "currency": "CNY"}}]}
    refused = await harness.client.post(close_url, json=recount, headers=harness.auth(merchant))
    assert refused.json()["code"] == "shift_closed"
    # An online order cannot join a closed shift.
    late = await harness.place(
        merchant, store, [{"product_id": str(product), "quantity": 1}], shift_id=str(shift_id)
    )
    assert late.status_code == 409
    assert late.json()["code"] == "shift_closed"
