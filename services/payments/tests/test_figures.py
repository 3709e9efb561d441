"""Payment lists without an order id and the daily figures: each payment and refund counts in
its order's business day, scoped to the caller's merchant and stores."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from openpyxl import load_workbook

from contracts.ids import new_id
from contracts.registry import make_envelope
from servicekit.bus.base import OutgoingMessage

from .conftest import Harness, eventually, placed_event

DAY = date(2026, 11, 26)
NEXT_DAY = date(2026, 11, 27)
READER = frozenset({"orders:write", "refunds:approve", "reports:read"})


def cny(amount: int) -> dict[str, object]:
    return {"amount": amount, "currency": "CNY"}


async def place(
    harness: Harness, merchant: uuid.UUID, store: uuid.UUID, total: int, day: date
) -> uuid.UUID:
    """An ``orders.order.placed`` carrying the business day orders gave the order."""
    order_id = new_id()
    envelope = make_envelope(
        placed_event(order_id, store, total),
        producer="orders",
        aggregate_id=order_id,
        merchant_id=merchant,
        store_id=store,
    )
    envelope.payload["business_day"] = day.isoformat()
    await harness.bus.broker.append(
        [
            OutgoingMessage(
                topic="orders.order",
                key=str(order_id).encode(),
                value=envelope.model_dump_json().encode(),
            )
        ]
    )
    await eventually(lambda: harness.replica_state(order_id, merchant))
    return order_id


async def pay(
    harness: Harness, merchant: uuid.UUID, order_id: uuid.UUID, method: str, amount: int
) -> dict[str, Any]:
    response = await harness.pay(
        merchant, {"order_id": str(order_id), "method": method, "amount": cny(amount)}
    )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    if method != "cash":
        payment = await harness.wait_status(merchant, payment["id"], "succeeded")
    return payment


async def refund(harness: Harness, merchant: uuid.UUID, payment_id: str, amount: int) -> None:
    response = await harness.client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount": cny(amount)},
        headers={"Idempotency-Key": uuid.uuid4().hex, **harness.token(merchant)},
    )
    assert response.status_code == 201, response.text

    async def settled() -> bool:
        listed = await harness.client.get(
            f"/v1/payments/{payment_id}/refunds", headers=harness.token(merchant)
        )
        return all(r["status"] == "succeeded" for r in listed.json())

    await eventually(settled)


async def figures(
    harness: Harness, merchant: uuid.UUID, day_from: date, day_to: date, **params: str
) -> dict[str, Any]:
    response = await harness.client.get(
        "/v1/payments/figures",
        params={
            "business_day_from": day_from.isoformat(),
            "business_day_to": day_to.isoformat(),
            **params,
        },
        headers=harness.token(merchant, READER),
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def listed(harness: Harness, merchant: uuid.UUID, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await harness.client.get(
            "/v1/payments", params=query, headers=harness.token(merchant)
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if cursor is None:
            return items


async def test_daily_figures_count_each_method_in_its_orders_day(harness: Harness) -> None:
    merchant, store, other_store = new_id(), new_id(), new_id()
    await harness.client.put(
        "/v1/settlement/config", json={"fee_rate_bps": 60}, headers=harness.token(merchant)
    )
    cash_order = await place(harness, merchant, store, 1000, DAY)
    qr_order = await place(harness, merchant, store, 2000, DAY)
    split_order = await place(harness, merchant, other_store, 700, DAY)
    tomorrow = await place(harness, merchant, store, 5000, NEXT_DAY)

    cash = await pay(harness, merchant, cash_order, "cash", 1000)
    qr = await pay(harness, merchant, qr_order, "wechat_pay", 2000)
    await pay(harness, merchant, split_order, "cash", 300)
    await pay(harness, merchant, split_order, "alipay", 400)
    await pay(harness, merchant, tomorrow, "cash", 5000)
    await refund(harness, merchant, cash["id"], 400)
    await refund(harness, merchant, qr["id"], 500)
    # Another merchant's money on the same day and in a store of the same id never counts.
    stranger = new_id()
    await pay(harness, stranger, await place(harness, stranger, store, 9900, DAY), "cash", 9900)

    day = await figures(harness, merchant, DAY, DAY)
    [cny_figures] = day["currencies"]
    by_method = {m["method"]: m for m in cny_figures["by_method"]}
    assert by_method["cash"]["payment_count"] == 2
    assert by_method["cash"]["captured"] == cny(1300)
    assert by_method["cash"]["refund_count"] == 1
    assert by_method["cash"]["refunded"] == cny(400)
    assert by_method["cash"]["net"] == cny(900)
    assert by_method["cash"]["fees"] == cny(0)
    assert by_method["wechat_pay"]["captured"] == cny(2000)
    assert by_method["wechat_pay"]["refunded"] == cny(500)
    # 0.6 % of 2000 = 12; a quarter of it comes back with a quarter refunded.
    assert by_method["wechat_pay"]["fees"] == cny(12)
    assert by_method["wechat_pay"]["fees_refunded"] == cny(3)
    assert by_method["wechat_pay"]["settled"] == cny(2000 - 500 - 12 + 3)
    assert by_method["alipay"]["captured"] == cny(400)
    assert cny_figures["captured"] == cny(3700)
    assert cny_figures["refunded"] == cny(900)
    assert cny_figures["net"] == cny(2800)
    assert cny_figures["payment_count"] == 4

    one_store = await figures(harness, merchant, DAY, DAY, store_id=str(store))
    assert one_store["currencies"][0]["captured"] == cny(3000)
    both_days = await figures(harness, merchant, DAY, NEXT_DAY)
    assert both_days["currencies"][0]["captured"] == cny(8700)

    # The list gives the same payments without an order id.
    of_the_day = await listed(
        harness,
        merchant,
        business_day_from=DAY.isoformat(),
        business_day_to=DAY.isoformat(),
    )
    assert len(of_the_day) == 4
    assert {p["order_id"] for p in of_the_day} == {
        str(cash_order),
        str(qr_order),
        str(split_order),
    }
    cash_of_store = await listed(
        harness,
        merchant,
        business_day_to=DAY.isoformat(),
        method="cash",
        store_id=str(store),
    )
    assert [p["id"] for p in cash_of_store] == [cash["id"]]
    partially = await listed(harness, merchant, status="partially_refunded")
    assert {p["id"] for p in partially} == {cash["id"], qr["id"]}
    everything = await listed(harness, merchant)
    assert len(everything) == 5


async def test_figures_and_lists_refuse_bad_ranges_other_stores_and_missing_rights(
    harness: Harness,
) -> None:
    merchant, store = new_id(), new_id()
    reversed_range = await harness.client.get(
        "/v1/payments/figures",
        params={"business_day_from": "2026-11-27", "business_day_to": "2026-11-26"},
        headers=harness.token(merchant, READER),
    )
    assert reversed_range.status_code == 422
    assert reversed_range.json()["code"] == "invalid_range"
    too_long = await harness.client.get(
        "/v1/payments/figures",
        params={"business_day_from": "2025-01-01", "business_day_to": "2026-11-26"},
        headers=harness.token(merchant, READER),
    )
    assert too_long.json()["code"] == "invalid_range"
    not_a_day = await harness.client.get(
        "/v1/payments/figures",
        params={"business_day_from": "yesterday", "business_day_to": "2026-11-26"},
        headers=harness.token(merchant, READER),
    )
    assert not_a_day.status_code == 422
    cashier = await harness.client.get(
        "/v1/payments/figures",
        params={"business_day_from": "2026-11-26", "business_day_to": "2026-11-26"},
        headers=harness.token(merchant, frozenset({"orders:write"})),
    )
    assert cashier.status_code == 403
    mine = frozenset({store})
    elsewhere = await harness.client.get(
        "/v1/payments/figures",
        params={
            "business_day_from": "2026-11-26",
            "business_day_to": "2026-11-26",
            "store_id": str(new_id()),
        },
        headers=harness.token(merchant, READER, store_ids=mine),
    )
    assert elsewhere.status_code == 404
    listed_elsewhere = await harness.client.get(
        "/v1/payments",
        params={"store_id": str(new_id())},
        headers=harness.token(merchant, READER, store_ids=mine),
    )
    assert listed_elsewhere.status_code == 404
    bad_method = await harness.client.get(
        "/v1/payments", params={"method": "bitcoin"}, headers=harness.token(merchant)
    )
    assert bad_method.status_code == 422
    reversed_list = await harness.client.get(
        "/v1/payments",
        params={"business_day_from": "2026-11-27", "business_day_to": "2026-11-26"},
        headers=harness.token(merchant),
    )
    assert reversed_list.json()["code"] == "invalid_range"


async def test_a_store_manager_sees_only_their_stores_figures(harness: Harness) -> None:
    merchant, mine, theirs = new_id(), new_id(), new_id()
    await pay(harness, merchant, await place(harness, merchant, mine, 100, DAY), "cash", 100)
    await pay(harness, merchant, await place(harness, merchant, theirs, 900, DAY), "cash", 900)
    response = await harness.client.get(
        "/v1/payments/figures",
        params={"business_day_from": DAY.isoformat(), "business_day_to": DAY.isoformat()},
        headers=harness.token(merchant, READER, store_ids=frozenset({mine})),
    )
    assert response.json()["currencies"][0]["captured"] == cny(100)
    assert json.dumps(response.json()).count(str(theirs)) == 0


async def test_export_of_a_days_payments_and_refunds(harness: Harness) -> None:
    merchant, store = new_id(), new_id()
    order = await place(harness, merchant, store, 1250, DAY)
    cash = await pay(harness, merchant, order, "cash", 1250)
    await refund(harness, merchant, cash["id"], 250)
    other_day = await place(harness, merchant, store, 999, NEXT_DAY)
    await pay(harness, merchant, other_day, "cash", 999)
    stranger = new_id()
    await pay(harness, stranger, await place(harness, stranger, store, 777, DAY), "cash", 777)

    days = {"business_day_from": DAY.isoformat(), "business_day_to": DAY.isoformat()}
    response = await harness.client.get(
        "/v1/payments/export", params=days, headers=harness.token(merchant, READER)
    )
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["支付"]
    header = rows[1]
    payment_rows = rows[2 : rows.index([])]
    assert len(payment_rows) == 1
    line = dict(zip(header, payment_rows[0], strict=True))
    assert line["支付ID"] == cash["id"]
    assert line["营业日"] == DAY.isoformat()
    assert line["金额"] == "12.50"
    assert line["已退金额"] == "2.50"
    refunds_at = rows.index(["退款"])
    refund_rows = rows[refunds_at + 2 :]
    assert len(refund_rows) == 1
    assert dict(zip(rows[refunds_at + 1], refund_rows[0], strict=True))["金额"] == "2.50"

    workbook_response = await harness.client.get(
        "/v1/payments/export",
        params={**days, "format": "xlsx", "lang": "en"},
        headers=harness.token(merchant, READER),
    )
    workbook = load_workbook(io.BytesIO(workbook_response.content), read_only=True)
    assert workbook.sheetnames == ["Payments", "Refunds"]
    payments = list(workbook["Payments"].iter_rows(values_only=True))
    assert payments[0][0] == "Business day"
    assert len(payments) == 2
    assert Decimal(str(payments[1][payments[0].index("Amount")])) == Decimal("12.5")

    cashier = await harness.client.get(
        "/v1/payments/export", params=days, headers=harness.token(merchant)
    )
    assert cashier.status_code == 403
    wrong = await harness.client.get(
        "/v1/payments/export",
        params={**days, "format": "pdf"},
        headers=harness.token(merchant, READER),
    )
    assert wrong.status_code == 422


async def test_an_order_read_through_from_orders_brings_its_business_day(
    harness: Harness,
) -> None:
    merchant, store, order_id = new_id(), new_id(), new_id()
    # The payment outruns orders' event: payments reads the order from orders itself.
    harness.orders.add(merchant, order_id, store, 880)
    harness.orders.orders[(str(merchant), str(order_id))]["business_day"] = DAY.isoformat()
    await pay(harness, merchant, order_id, "cash", 880)

    day = await figures(harness, merchant, DAY, DAY)
    assert day["currencies"][0]["captured"] == cny(880)
    assert [
        p["order_id"] for p in await listed(harness, merchant, business_day_to=DAY.isoformat())
    ] == [str(order_id)]
