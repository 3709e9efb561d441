"""Bad input to ``POST /v1/orders`` is a 4xx problem with a stable code, never a 500 and never
an order: unknown or foreign stores and members, future dates, negative or overflowing prices,
totals of zero, and requests beyond the bounds that keep every event under the broker's limit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events.inventory import ProductCreated
from contracts.events.members import MemberCreated
from contracts.money import MAX_AMOUNT, Money

CNY = "CNY"


def codes(response: Any) -> dict[str, str]:
    return {e["field"]: e["code"] for e in response.json()["errors"]}


async def test_unknown_and_foreign_stores_are_refused(harness: Any, kit: Any) -> None:
    merchant, other = uuid.uuid4(), uuid.uuid4()
    product_id = await harness.seed_product(merchant)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    unknown = await harness.place(merchant, uuid.uuid4(), lines, seed_store=False)
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["code"] == "unknown_store"
    assert codes(unknown) == {"store_id": "unknown_store"}
    # Another merchant's store answers exactly like a store that does not exist.
    foreign = await harness.seed_store(other)
    refused = await harness.place(merchant, foreign, lines, seed_store=False)
    assert refused.status_code == 422
    assert refused.json()["code"] == "unknown_store"
    # The other merchant announcing a store under this merchant's id changes nothing here.
    forged = kit.store_created(merchant, foreign, announced_by=other)
    await harness.publish(forged)
    await harness.dead_lettered(forged)
    still = await harness.place(merchant, foreign, lines, seed_store=False)
    assert still.json()["code"] == "unknown_store"
    listed = await harness.client.get("/v1/orders", headers=harness.auth(merchant))
    assert listed.json()["items"] == []


async def test_member_must_be_known_to_this_merchant(harness: Any) -> None:
    merchant, other = uuid.uuid4(), uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    unknown = await harness.place(merchant, store, lines, member_id=str(uuid.uuid4()))
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_member"
    assert codes(unknown) == {"member_id": "unknown_member"}
    foreign_member = await harness.seed_member(other)
    foreign = await harness.place(merchant, store, lines, member_id=str(foreign_member))
    assert foreign.json()["code"] == "unknown_member"
    member = await harness.seed_member(merchant)
    ok = await harness.place(merchant, store, lines, member_id=str(member))
    assert ok.status_code == 201, ok.text
    assert ok.json()["member_id"] == str(member)


async def test_the_same_order_id_after_a_refusal_is_placed(harness: Any) -> None:
    """A refusal because a replica had not heard of the member yet leaves nothing behind: the
    till's retry of the same order succeeds once the member arrives."""
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant)
    order_id = uuid.uuid4()
    member_id = uuid.uuid4()
    lines = [{"product_id": str(product_id), "quantity": 1}]
    early = await harness.place(merchant, store, lines, order_id=order_id, member_id=str(member_id))
    assert early.json()["code"] == "unknown_member"
    await harness.publish_applied(
        harness.envelope(MemberCreated(member_id=member_id), merchant, member_id, "members")
    )
    later = await harness.place(merchant, store, lines, order_id=order_id, member_id=str(member_id))
    assert later.status_code == 201, later.text


async def test_orders_dated_in_the_future_are_refused(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    now = datetime.now(UTC)
    for when in (now + timedelta(minutes=10), datetime(2099, 1, 1, tzinfo=UTC)):
        response = await harness.place(merchant, store, lines, occurred_at=when.isoformat())
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "occurred_in_future"
        assert codes(response) == {"occurred_at": "occurred_in_future"}
    # A till whose clock runs a little ahead is fine.
    slightly = await harness.place(
        merchant, store, lines, occurred_at=(now + timedelta(minutes=1)).isoformat()
    )
    assert slightly.status_code == 201, slightly.text


async def test_overflowing_price_arithmetic_is_a_422(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    dear = await harness.seed_product(merchant, price=2**62)
    cheap = await harness.seed_product(merchant, price=100)
    line_overflow = await harness.place(
        merchant, store, [{"product_id": str(dear), "quantity": 100_000}]
    )
    assert line_overflow.status_code == 422, line_overflow.text
    assert codes(line_overflow) == {"lines[0].quantity": "amount_out_of_range"}
    override = await harness.place(
        merchant,
        store,
        [
            {
                "product_id": str(cheap),
                "quantity": 2,
                "unit_price": {"amount": MAX_AMOUNT, "currency": CNY},
            }
        ],
    )
    assert override.status_code == 422
    assert codes(override) == {"lines[0].quantity": "amount_out_of_range"}
    # Each line fits; together they do not.
    big = 2**52
    many = await harness.place(
        merchant,
        store,
        [
            {
                "product_id": str(cheap),
                "quantity": 1,
                "unit_price": {"amount": big, "currency": CNY},
            }
            for _ in range(3)
        ],
    )
    assert many.status_code == 422
    assert codes(many) == {"lines": "amount_out_of_range"}
    beyond_bigint = await harness.place(
        merchant,
        store,
        [
            {
                "product_id": str(cheap),
                "quantity": 1,
                "unit_price": {"amount": 2**63, "currency": CNY},
            }
        ],
    )
    assert beyond_bigint.status_code == 422


async def test_negative_prices_and_discounts_are_refused(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=1000)
    for field in ("unit_price", "discount"):
        response = await harness.place(
            merchant,
            store,
            [
                {
                    "product_id": str(product_id),
                    "quantity": 1,
                    field: {"amount": -1, "currency": CNY},
                }
            ],
        )
        assert response.status_code == 422, response.text
        assert codes(response) == {f"lines[0].{field}": "negative_amount"}
    # A negative price reaching the catalog replica does not sell either.
    negative = uuid.uuid4()
    await harness.publish_applied(
        harness.envelope(
            ProductCreated(
                product_id=negative,
                version=1,
                sku="NEG",
                name="Negative",
                unit="each",
                price=Money.of(-500, CNY),
                tax_rate_bps=0,
                status="active",
            ),
            merchant,
            negative,
            "inventory",
        )
    )
    response = await harness.place(merchant, store, [{"product_id": str(negative), "quantity": 1}])
    assert response.status_code == 422
    assert codes(response) == {"lines[0].unit_price": "negative_amount"}


async def test_a_zero_total_never_makes_a_paid_order(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=1000)
    free = await harness.seed_product(merchant, price=0)
    for line in (
        {
            "product_id": str(product_id),
            "quantity": 1,
            "unit_price": {"amount": 0, "currency": CNY},
        },
        {
            "product_id": str(product_id),
            "quantity": 2,
            "discount": {"amount": 2000, "currency": CNY},
        },
        {"product_id": str(free), "quantity": 3},
    ):
        response = await harness.place(merchant, store, [line])
        assert response.status_code == 422, response.text
        assert codes(response) == {"lines": "total_not_positive"}
    listed = await harness.client.get("/v1/orders", headers=harness.auth(merchant))
    assert listed.json()["items"] == []
    assert await harness.outboxed("orders.order.placed", merchant) == 0


async def test_bounds_that_keep_events_small(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant)
    line = {"product_id": str(product_id), "quantity": 1}
    cases: list[tuple[dict[str, Any], list[dict[str, Any]], str, str]] = [
        ({}, [line] * 201, "lines", "too_long"),
        ({}, [{**line, "notes": "x" * 101}], "lines[0].notes", "too_long"),
        ({}, [{**line, "modifiers": ["m"] * 6}], "lines[0].modifiers", "too_long"),
        ({}, [{**line, "modifiers": ["m" * 31]}], "lines[0].modifiers[0]", "too_long"),
        ({}, [{**line, "quantity": 100_001}], "lines[0].quantity", "out_of_range"),
        ({}, [{**line, "notes": "open drawer \x1bp"}], "lines[0].notes", "control_character"),
        ({"table": "T" * 33}, [line], "table", "too_long"),
        ({"table": "A\x07"}, [line], "table", "control_character"),
    ]
    for extra, lines, field, code in cases:
        response = await harness.place(merchant, store, lines, **extra)
        assert response.status_code == 422, (field, response.text)
        assert codes(response) == {field: code}, field
    fine = await harness.place(merchant, store, [{**line, "notes": "no onion\nextra chili"}])
    assert fine.status_code == 201, fine.text
