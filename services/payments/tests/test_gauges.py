"""The operators' payment gauges come from the database at each scrape."""

from __future__ import annotations

import re

from contracts.ids import new_id

from .conftest import Harness


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_recent_payments_by_method_and_the_oldest_pending_are_exposed(
    harness: Harness,
) -> None:
    before = (await harness.client.get("/metrics")).text
    cash_before = sample(before, "countertop_payments_recent", method="cash", status="succeeded")
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 1250)
    paid = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "cash",
            "amount": {"amount": 1250, "currency": "CNY"},
        },
    )
    assert paid.status_code == 201, paid.text

    after = (await harness.client.get("/metrics")).text
    cash = sample(after, "countertop_payments_recent", method="cash", status="succeeded")
    assert cash is not None
    assert cash == (cash_before or 0) + 1
    age = sample(after, "countertop_payments_pending_oldest_age_seconds", service="payments")
    assert age is not None
    assert age >= 0
