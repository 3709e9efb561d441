"""Payments and refunds a till took offline, recorded from orders' events: once, in any
order, counted like online ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.events.orders import OfflinePayment, OrderOfflineRefunded, OrderOfflineTendered
from contracts.ids import new_id
from contracts.money import Money
from servicekit.testing.wait import eventually

from .conftest import Harness

WHEN = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)


async def _payment(
    harness: Harness, merchant: uuid.UUID, payment_id: uuid.UUID, status: str
) -> dict[str, Any]:
    """The payment once payments recorded it and it reached ``status``."""

    async def reached() -> dict[str, Any] | None:
        response = await harness.client.get(
            f"/v1/payments/{payment_id}", headers=harness.token(merchant)
        )
        if response.status_code != 200:
            return None
        found: dict[str, Any] = response.json()
        return found if found["status"] == status else None

    result: dict[str, Any] = await eventually(reached)
    return result


def _tender(order_id: uuid.UUID, store_id: uuid.UUID, **overrides: Any) -> OrderOfflineTendered:
    fields: dict[str, Any] = {
        "payment_id": new_id(),
        "order_id": order_id,
        "store_id": store_id,
        "method": "wechat_pay",
        "amount": Money.of(5000, "CNY"),
        "provider_reference": "4200000001",
        "till_id": "till-1",
        "occurred_at": WHEN,
        **overrides,
    }
    return OrderOfflineTendered(**fields)


def _refund(tender: OrderOfflineTendered, amount: int) -> OrderOfflineRefunded:
    return OrderOfflineRefunded(
        refund_id=new_id(),
        payment_id=tender.payment_id,
        order_id=tender.order_id,
        store_id=tender.store_id,
        amount=Money.of(amount, "CNY"),
        till_id=tender.till_id,
        occurred_at=WHEN,
        payment=OfflinePayment(
            method=tender.method,
            amount=tender.amount,
            tendered=tender.tendered,
            provider_reference=tender.provider_reference,
            occurred_at=tender.occurred_at,
        ),
    )


async def test_an_offline_qr_payment_is_recorded_once_with_its_reference(
    harness: Harness,
) -> None:
    merchant = new_id()
    order_id, store = await harness.place_order(merchant, 5000)
    tender = _tender(order_id, store)
    await harness.publish(tender, merchant, order_id)
    await harness.publish(tender, merchant, order_id)
    payment = await _payment(harness, merchant, tender.payment_id, "succeeded")
    assert payment["amount"] == {"amount": 5000, "currency": "CNY"}
    assert payment["method"] == "wechat_pay"
    (succeeded,) = await harness.wait_events(tender.payment_id, 1, settle=0.3)
    assert succeeded["type"] == "payments.payment.succeeded"
    assert succeeded["payload"]["provider_reference"] == "4200000001"


async def test_an_offline_refund_before_its_payment_records_both_once(harness: Harness) -> None:
    merchant = new_id()
    order_id, store = await harness.place_order(merchant, 3000)
    tender = _tender(
        order_id,
        store,
        method="cash",
        amount=Money.of(3000, "CNY"),
        tendered=Money.of(5000, "CNY"),
        provider_reference=None,
    )
    refund = _refund(tender, 1000)
    await harness.publish(refund, merchant, order_id)
    await harness.publish(tender, merchant, order_id)
    await harness.publish(refund, merchant, order_id)
    payment = await _payment(harness, merchant, tender.payment_id, "partially_refunded")
    assert payment["refunded"] == {"amount": 1000, "currency": "CNY"}
    events = await harness.wait_events(tender.payment_id, 2, settle=0.3)
    assert sorted(e["type"] for e in events) == [
        "payments.payment.refunded",
        "payments.payment.succeeded",
    ]
