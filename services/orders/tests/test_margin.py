"""Cost and margin: inventory's cost reaches the catalog replica (newest version wins), each
line freezes the cost known when it was sold (a synced offline order the cost in force at its
``occurred_at``), and the report and its export show cost and margin over the known-cost lines
only, with the rest counted apart, to callers who may see costs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contracts.envelope import EventEnvelope
from contracts.events.inventory import ProductCreated, ProductUpdated
from contracts.money import Money
from orders.models import CatalogProduct, OrderLine

from .conftest import T0, Harness, auth_headers, envelope
from .test_exports import csv_rows, export
from .test_offline_sync import _order, _sync
from .test_reports import DAY, cny, report, sold


def _snapshot(
    product_id: uuid.UUID, version: int, cost: int | None, *, price: int = 1000
) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "version": version,
        "sku": f"SKU-{product_id.hex[:8]}",
        "name": "Dumplings",
        "unit": "each",
        "price": Money.of(price, "CNY"),
        "tax_rate_bps": 600,
        "status": "active",
        "cost": Money.of(cost, "CNY") if cost is not None else None,
    }


def _announced(
    merchant: uuid.UUID, product_id: uuid.UUID, version: int, cost: int | None, at: datetime
) -> EventEnvelope:
    kind = ProductCreated if version == 1 else ProductUpdated
    event = envelope(
        kind(**_snapshot(product_id, version, cost)), merchant, product_id, "inventory"
    )
    return event.model_copy(update={"occurred_at": at})


async def _replica_cost(harness: Harness, merchant: uuid.UUID, product: uuid.UUID) -> Any:
    async with harness.database.transaction() as session:
        return await session.scalar(
            sa.select(CatalogProduct.cost).where(
                CatalogProduct.merchant_id == merchant, CatalogProduct.product_id == product
            )
        )


async def _line_costs(harness: Harness, merchant: uuid.UUID, order_id: str) -> list[int | None]:
    async with harness.database.transaction() as session:
        rows = await session.scalars(
            sa.select(OrderLine.unit_cost)
            .where(OrderLine.merchant_id == merchant, OrderLine.order_id == uuid.UUID(order_id))
            .order_by(OrderLine.position)
        )
        return list(rows)


async def test_costs_are_frozen_at_sale_and_the_margin_counts_known_costs_only(
    harness: Harness,
) -> None:
    merchant, store = uuid.uuid4(), uuid.uuid4()
    dumplings = uuid.uuid4()
    await harness.publish_applied(_announced(merchant, dumplings, 1, 600, T0 - timedelta(days=1)))
    no_cost = await harness.seed_product(merchant, price=1000)
    first = await sold(harness, merchant, store, [{"product_id": str(dumplings), "quantity": 2}])
    assert await _line_costs(harness, merchant, first["id"]) == [600]

    # A dearer delivery moves the cost: past sales keep theirs. The older snapshot, delivered
    # again afterwards, does not bring the old cost back.
    newer = _announced(merchant, dumplings, 2, 800, T0)
    await harness.publish_applied(newer)
    await harness.publish_applied(_announced(merchant, dumplings, 1, 600, T0 - timedelta(days=1)))
    await harness.publish_applied(newer.model_copy(update={"event_id": uuid.uuid4()}))
    assert await _replica_cost(harness, merchant, dumplings) == 800
    later = T0 + timedelta(hours=1)
    second = await sold(
        harness,
        merchant,
        store,
        [
            {"product_id": str(dumplings), "quantity": 1},
            {"product_id": str(no_cost), "quantity": 1},
        ],
        at=later,
    )
    assert await _line_costs(harness, merchant, second["id"]) == [800, None]
    assert await _line_costs(harness, merchant, first["id"]) == [600]

    sales = await report(harness, merchant)
    assert sales["costs_shown"] is True
    top = {p["product_id"]: p for p in sales["top_products_by_quantity"]}
    known = top[str(dumplings)]
    assert (known["quantity"], known["revenue"]) == (3, cny(3000))
    assert known["cost"] == cny(2 * 600 + 800)
    assert known["margin"] == cny(1000)
    assert known["margin_bps"] == 3333  # 1000 / 3000, rounded half away from zero
    assert (known["cost_unknown_quantity"], known["cost_unknown_revenue"]) == (0, cny(0))
    unknown = top[str(no_cost)]
    assert (unknown["cost"], unknown["margin"], unknown["margin_bps"]) == (None, None, None)
    assert (unknown["cost_unknown_quantity"], unknown["cost_unknown_revenue"]) == (1, cny(1000))
    margin = sales["summary"]["margin"]
    # Over the known-cost lines only: the line without a cost is outside the margin.
    assert (margin["cost"], margin["margin"], margin["margin_bps"]) == (cny(2000), cny(1000), 3333)
    assert (margin["cost_unknown_quantity"], margin["cost_unknown_revenue"]) == (1, cny(1000))

    # Costs are a catalog manager's figures: a report reader without that sees none.
    blind = await harness.client.get(
        "/v1/reports/sales",
        params={"business_day_from": DAY, "business_day_to": DAY},
        headers=auth_headers(merchant, frozenset({"reports:read"})),
    )
    assert blind.status_code == 200, blind.text
    assert blind.json()["costs_shown"] is False
    for line in blind.json()["top_products_by_quantity"]:
        assert (line["cost"], line["margin"], line["margin_bps"]) == (None, None, None)
    assert blind.json()["summary"]["margin"]["cost_unknown_quantity"] == 1

    chinese = await export(
        harness, merchant, "sales-report", business_day_from=DAY, business_day_to=DAY
    )
    assert chinese.status_code == 200, chinese.text
    rows = csv_rows(chinese.content)
    assert ["毛利(仅成本已知行)", "10.00"] in rows
    assert ["毛利率(%)", "33.33"] in rows
    header = next(r for r in rows if r[:1] == ["商品ID"])
    assert header[5:] == [
        "成本(仅成本已知行)",
        "毛利(仅成本已知行)",
        "毛利率(%)",
        "成本未知数量",
        "成本未知销售额",
    ]
    assert [
        str(dumplings),
        "Dumplings",
        "3",
        "30.00",
        "1.70",
        "20.00",
        "10.00",
        "33.33",
        "0",
        "0.00",
    ] in rows
    english = await export(
        harness, merchant, "sales-report", business_day_from=DAY, business_day_to=DAY, lang="en"
    )
    assert ["Margin (known-cost lines)", "10.00"] in csv_rows(english.content)


async def test_a_synced_order_takes_the_cost_in_force_when_it_was_sold(harness: Harness) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product = uuid.uuid4()
    now = datetime.now(UTC)
    # Announced out of order: the newer cost first.
    await harness.publish_applied(_announced(merchant, product, 2, 700, now - timedelta(hours=1)))
    await harness.publish_applied(_announced(merchant, product, 1, 500, now - timedelta(hours=3)))
    assert await _replica_cost(harness, merchant, product) == 700
    before_any = _order(product, occurred_at=now - timedelta(hours=4))
    at_first = _order(product, occurred_at=now - timedelta(hours=2))
    at_second = _order(product, occurred_at=now - timedelta(minutes=30))
    result = await _sync(harness, merchant, store, [before_any, at_first, at_second])
    assert result["created"] == 3, result
    assert await _line_costs(harness, merchant, before_any["id"]) == [None]
    assert await _line_costs(harness, merchant, at_first["id"]) == [500]
    assert await _line_costs(harness, merchant, at_second["id"]) == [700]
    # The same batch again changes nothing.
    again = await _sync(harness, merchant, store, [before_any, at_first, at_second])
    assert again["already_synced"] == 3
    assert await _line_costs(harness, merchant, at_first["id"]) == [500]
