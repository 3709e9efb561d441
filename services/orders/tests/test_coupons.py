"""Coupons at checkout: applied in the quote, held by the order placed with them (one order
only, also when two tills try at once), used when it is paid, given back when it is
cancelled or refunded in full; refused with a reason otherwise."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from contracts.events.members import CouponIssued, CouponVoided
from contracts.money import Money
from orders.models import Order
from orders.promotions.pricing import recompute

from .conftest import T0, Harness


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


async def issue(
    h: Harness, merchant: uuid.UUID, member: uuid.UUID, kind: str = "full_reduction", **terms: Any
) -> uuid.UUID:
    coupon_id = uuid.uuid4()
    values: dict[str, Any] = {
        "coupon_id": coupon_id,
        "member_id": member,
        "template_id": uuid.uuid4(),
        "code": f"C{coupon_id.hex[:6]}",
        "kind": kind,
        "valid_from": T0 - timedelta(days=1),
        "valid_until": T0 + timedelta(days=30),
        **terms,
    }
    if kind == "full_reduction" and "threshold" not in terms:
        values |= {"threshold": Money.of(2000, "CNY"), "amount_off": Money.of(500, "CNY")}
    issued = CouponIssued.model_validate(values)
    await h.publish_applied(h.envelope(issued, merchant, coupon_id, "members"))
    return coupon_id


def order_body(
    store: uuid.UUID, product: uuid.UUID, member: uuid.UUID | None, coupons: list[uuid.UUID]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "channel": "pos",
        "store_id": str(store),
        "occurred_at": T0.isoformat(),
        "lines": [{"product_id": str(product), "quantity": 1}],
        "coupon_ids": [str(c) for c in coupons],
    }
    if member is not None:
        body["member_id"] = str(member)
    return body


async def place(h: Harness, merchant: uuid.UUID, body: dict[str, Any]) -> httpx.Response:
    return await h.client.post(
        "/v1/orders",
        json=body,
        headers={**h.auth(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )


async def quote(h: Harness, merchant: uuid.UUID, body: dict[str, Any]) -> dict[str, Any]:
    response = await h.client.post("/v1/orders/quote", json=body, headers=h.auth(merchant))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def shop(h: Harness) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    merchant = uuid.uuid4()
    store = await h.seed_store(merchant)
    member = await h.seed_member(merchant)
    product = await h.seed_product(merchant, price=3000)
    return merchant, store, member, product


def coupon_events(h: Harness, kind: str, merchant: uuid.UUID, coupon: uuid.UUID) -> list[Any]:
    return [
        e.payload
        for e in h.events(f"orders.coupon.{kind}", merchant)
        if e.payload["coupon_id"] == str(coupon)
    ]


async def test_quoted_held_used_and_given_back_by_a_full_refund(h: Harness) -> None:
    merchant, store, member, product = await shop(h)
    coupon = await issue(h, merchant, member)
    body = order_body(store, product, member, [coupon])
    quoted = await quote(h, merchant, body)
    assert quoted["coupons"] == [
        {"coupon_id": str(coupon), "amount": {"amount": 500, "currency": "CNY"}}
    ]
    assert quoted["total"]["amount"] == 2500
    assert quoted["lines"][0]["adjustments"][0]["source"] == "coupon"

    placed = await place(h, merchant, body)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["total"]["amount"] == 2500
    assert order["lines"][0]["adjustments"][0]["id"] == str(coupon)
    (reserved,) = await h.wait_events("orders.coupon.reserved", merchant, 1)
    assert reserved.payload["sequence"] == 1
    assert reserved.payload["order_id"] == order["id"]
    assert reserved.payload["discount"] == {"amount": 500, "currency": "CNY"}
    # The same request again is the same order, not a second hold.
    again = await place(h, merchant, body)
    assert again.status_code == 200
    assert await h.outboxed("orders.coupon.reserved", merchant) == 1

    # Another order cannot take it, and a quote says why.
    other = order_body(store, product, member, [coupon])
    refused = await place(h, merchant, other)
    assert refused.status_code == 409
    assert refused.json()["code"] == "coupon_unavailable"
    assert (await quote(h, merchant, other))["rejected_coupons"] == [
        {"coupon_id": str(coupon), "reason": "coupon_unavailable"}
    ]

    payment_id = uuid.uuid4()
    await h.pay(merchant, store, order["id"], 2500, payment_id=payment_id)
    await h.wait_status(merchant, order["id"], "paid")
    (redeemed,) = await h.wait_events("orders.coupon.redeemed", merchant, 1)
    assert redeemed.payload["sequence"] == 2
    assert (await quote(h, merchant, other))["rejected_coupons"][0]["reason"] == "coupon_used"
    # The used coupon still prices the order it was used on, recomputed from what it stored.
    async with h.database.transaction() as session:
        stored = await session.get(Order, (merchant, uuid.UUID(order["id"])))
        assert stored is not None
        result = await recompute(session, stored)
    assert result is not None
    assert result.coupons == {coupon: 500}
    assert result.total == 2500

    # A partial refund keeps it used; the refund that completes it gives it back.
    await h.refund(merchant, store, order["id"], payment_id, 1000)
    await h.wait_status(merchant, order["id"], "partially_refunded")
    assert await h.outboxed("orders.coupon.released", merchant) == 0
    await h.refund(merchant, store, order["id"], payment_id, 1500)
    await h.wait_status(merchant, order["id"], "refunded")
    (released,) = await h.wait_events("orders.coupon.released", merchant, 1)
    assert released.payload["reason"] == "refunded"
    assert released.payload["sequence"] == 3

    reused = await place(h, merchant, other)
    assert reused.status_code == 201, reused.text
    events = await h.wait_events("orders.coupon.reserved", merchant, 2)
    assert [e.payload["sequence"] for e in events] == [1, 4]


async def test_cancelling_gives_the_coupon_back(h: Harness) -> None:
    merchant, store, member, product = await shop(h)
    coupon = await issue(h, merchant, member, "no_threshold", amount_off=Money.of(300, "CNY"))
    placed = await place(h, merchant, order_body(store, product, member, [coupon]))
    assert placed.status_code == 201, placed.text
    assert placed.json()["total"]["amount"] == 2700
    cancelled = await h.client.post(
        f"/v1/orders/{placed.json()['id']}/cancel", headers=h.auth(merchant)
    )
    assert cancelled.status_code == 200, cancelled.text
    (released,) = await h.wait_events("orders.coupon.released", merchant, 1)
    assert released.payload["reason"] == "cancelled"
    assert released.payload["sequence"] == 2
    again = await place(h, merchant, order_body(store, product, member, [coupon]))
    assert again.status_code == 201, again.text


async def test_two_tills_placing_one_coupon_at_once_one_wins(h: Harness) -> None:
    merchant, store, member, product = await shop(h)
    for round_ in range(1, 4):
        coupon = await issue(h, merchant, member)
        bodies = [order_body(store, product, member, [coupon]) for _ in range(2)]
        first, second = await asyncio.gather(*(place(h, merchant, b) for b in bodies))
        assert sorted([first.status_code, second.status_code]) == [201, 409], (
            first.text,
            second.text,
        )
        lost = 0 if first.status_code == 409 else 1
        assert (first, second)[lost].json()["code"] == "coupon_unavailable"
        # The loser left nothing behind: no order, no second hold.
        missing = await h.client.get(f"/v1/orders/{bodies[lost]['id']}", headers=h.auth(merchant))
        assert missing.status_code == 404
        assert await h.outboxed("orders.coupon.reserved", merchant) == round_


async def test_coupons_that_do_not_apply_are_refused_with_the_reason(h: Harness) -> None:
    merchant, store, member, product = await shop(h)
    someone_else = await h.seed_member(merchant)

    # Unknown here (perhaps issued a moment ago), or another merchant's: not found.
    stranger = uuid.uuid4()
    stranger_member = await h.seed_member(stranger)
    foreign = await issue(h, stranger, stranger_member)
    for coupon in (uuid.uuid4(), foreign):
        response = await place(h, merchant, order_body(store, product, member, [coupon]))
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "coupon_not_found"
        assert response.json()["errors"][0]["field"] == "coupon_ids[0]"

    cases = {
        "coupon_not_for_member": (await issue(h, merchant, someone_else), member),
        "member_required": (await issue(h, merchant, member), None),
        "threshold_not_met": (
            await issue(
                h,
                merchant,
                member,
                threshold=Money.of(3001, "CNY"),
                amount_off=Money.of(100, "CNY"),
            ),
            member,
        ),
        "coupon_expired": (
            await issue(
                h,
                merchant,
                member,
                "no_threshold",
                amount_off=Money.of(100, "CNY"),
                valid_until=T0 - timedelta(seconds=1),
            ),
            member,
        ),
        "coupon_wrong_store": (
            await issue(
                h,
                merchant,
                member,
                "no_threshold",
                amount_off=Money.of(100, "CNY"),
                store_ids=[uuid.uuid4()],
            ),
            member,
        ),
    }
    for reason, (coupon, holder) in cases.items():
        body = order_body(store, product, holder, [coupon])
        response = await place(h, merchant, body)
        assert response.status_code == 422, (reason, response.text)
        assert response.json()["code"] == "coupon_not_applicable"
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
            ("coupon_ids[0]", reason)
        ]
        assert (await quote(h, merchant, body))["rejected_coupons"] == [
            {"coupon_id": str(coupon), "reason": reason}
        ]
        missing = await h.client.get(f"/v1/orders/{body['id']}", headers=h.auth(merchant))
        assert missing.status_code == 404

    # Withdrawn: before or after its issue reached orders.
    voided = await issue(h, merchant, member)
    void = CouponVoided(coupon_id=voided, member_id=member, reason="mistake")
    await h.publish_applied(h.envelope(void, merchant, voided, "members"))
    early = uuid.uuid4()
    void = CouponVoided(coupon_id=early, member_id=member, reason="mistake")
    await h.publish_applied(h.envelope(void, merchant, early, "members"))
    await issue_with_id(h, merchant, member, early)
    for coupon in (voided, early):
        response = await place(h, merchant, order_body(store, product, member, [coupon]))
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "coupon_unavailable"

    duplicate = await issue(h, merchant, member)
    response = await place(h, merchant, order_body(store, product, member, [duplicate, duplicate]))
    assert response.status_code == 422
    assert await h.outboxed("orders.coupon.reserved", merchant) == 0


async def issue_with_id(
    h: Harness, merchant: uuid.UUID, member: uuid.UUID, coupon_id: uuid.UUID
) -> None:
    issued = CouponIssued(
        coupon_id=coupon_id,
        member_id=member,
        template_id=uuid.uuid4(),
        code="LATE",
        kind="no_threshold",
        amount_off=Money.of(100, "CNY"),
        valid_from=T0 - timedelta(days=1),
        valid_until=T0 + timedelta(days=1),
    )
    await h.publish_applied(h.envelope(issued, merchant, coupon_id, "members"))
