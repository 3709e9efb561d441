"""Tobacco: bureau codes, a day's sales and stock in the store's timezone, and the compliance
log an inspector is shown."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import KEY, Harness
from .test_purchasing import purchase_order, send, supplier
from .test_stock import paid


def _cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


async def test_daily_report_and_compliance_log(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.store(merchant)  # Asia/Shanghai, UTC+8
    cigarettes = await harness.product(
        merchant, is_tobacco=True, tobacco_code="6901028075022", name="Zhonghua"
    )
    tea = await harness.product(merchant)
    vendor = await supplier(harness, merchant, tobacco_licence="YC-310101-0001")
    order = await purchase_order(
        harness,
        merchant,
        store,
        {
            "supplier_id": vendor["id"],
            "lines": [{"product_id": cigarettes["id"], "quantity": 100, "unit_cost": _cny(4000)}],
        },
    )
    order = await send(harness, merchant, order)
    received = await harness.client.post(
        f"/v1/stores/{store}/purchase-orders/{order['id']}/receipts",
        json={
            "occurred_at": "2026-03-01T02:00:00Z",
            "lines": [{"product_id": cigarettes["id"], "quantity": 100}],
        },
        headers=harness.keyed(merchant),
    )
    assert received.status_code == 201
    late_evening = paid(
        store,
        [(cigarettes["id"], 3), (tea["id"], 1)],
        occurred_at=datetime(2026, 3, 1, 15, 30, tzinfo=UTC),  # 23:30 in Shanghai
    )
    after_midnight = paid(
        store, [(cigarettes["id"], 2)], occurred_at=datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    )
    for sale in (late_evening, after_midnight):
        await harness.publish(harness.envelope(sale, merchant, sale.order_id))
    await harness.wait_on_hand(merchant, store, cigarettes["id"], 95)

    url = f"/v1/stores/{store}/tobacco/daily-report"
    first = await harness.client.get(
        url, params={"date": "2026-03-01"}, headers=harness.auth(merchant)
    )
    assert first.status_code == 200, first.text
    assert first.json()["timezone"] == "Asia/Shanghai"
    [line] = first.json()["lines"]
    assert line["tobacco_code"] == "6901028075022"
    assert (line["opening"], line["purchased"], line["sold"], line["closing"]) == (0, 100, 3, 97)
    second = await harness.client.get(
        url, params={"date": "2026-03-02"}, headers=harness.auth(merchant)
    )
    [line] = second.json()["lines"]
    assert (line["opening"], line["sold"], line["other"], line["closing"]) == (97, 2, 0, 95)

    log = await harness.client.get(
        "/v1/tobacco/compliance-log",
        params={"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"},
        headers=harness.auth(merchant),
    )
    assert log.status_code == 200
    assert log.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(log.text)))
    assert [(r["movement"], r["quantity"]) for r in rows] == [
        ("stock_in", "100"),
        ("sale", "-3"),
        ("sale", "-2"),
    ]
    assert rows[0]["supplier_licence"] == "YC-310101-0001"
    assert rows[0]["document"] == order["number"]
    assert rows[1]["document"] == str(late_evening.order_id)
    assert all(r["tobacco_code"] == "6901028075022" for r in rows)

    cashier = bearer_headers(
        KEY,
        merchant,
        scopes=frozenset({"orders:write"}),
        store_ids=frozenset({store}),
        role=Role.CASHIER,
    )
    refused = await harness.client.get(url, params={"date": "2026-03-01"}, headers=cashier)
    assert refused.status_code == 403
    intruder = await harness.client.get(
        "/v1/tobacco/compliance-log",
        params={"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"},
        headers=harness.auth(uuid.uuid4()),
    )
    assert len(list(csv.DictReader(io.StringIO(intruder.text)))) == 0
    too_long = await harness.client.get(
        "/v1/tobacco/compliance-log",
        params={"from": "2020-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"},
        headers=harness.auth(merchant),
    )
    assert too_long.status_code == 422
