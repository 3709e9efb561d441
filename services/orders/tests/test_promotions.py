"""Promotions through the API: who may make them where, versions, the quote, placing priced
by the same engine, and recomputing an order from what it stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from contracts.events.inventory import ProductCreated
from contracts.events.members import MemberUpdated
from contracts.money import Money
from orders.models import Member, Order
from orders.promotions.pricing import recompute
from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import KEY, MANAGER, T0, Harness


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


PROMOTER = MANAGER | {"promotions:write"}


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def hq(merchant_id: uuid.UUID, scopes: frozenset[str] = PROMOTER) -> dict[str, str]:
    return bearer_headers(KEY, merchant_id, scopes=scopes, role=Role.HQ_ADMIN)


def manager(merchant_id: uuid.UUID, *stores: uuid.UUID) -> dict[str, str]:
    return bearer_headers(
        KEY, merchant_id, scopes=PROMOTER, store_ids=frozenset(stores), role=Role.STORE_MANAGER
    )


async def create(
    h: Harness, headers: dict[str, str], body: dict[str, Any], expect: int = 201
) -> dict[str, Any]:
    response = await h.client.post(
        "/v1/promotions", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
    )
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def product(
    h: Harness, merchant_id: uuid.UUID, price: int, category_id: uuid.UUID | None = None
) -> uuid.UUID:
    product_id = uuid.uuid4()
    created = ProductCreated(
        product_id=product_id,
        version=1,
        sku=f"SKU-{product_id.hex[:8]}",
        name=f"P{price}",
        category_id=category_id,
        unit="each",
        price=Money.of(price, "CNY"),
        tax_rate_bps=600,
        status="active",
    )
    await h.publish_applied(h.envelope(created, merchant_id, product_id, "inventory"))
    return product_id


def body(store_id: uuid.UUID, lines: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "channel": "pos",
        "store_id": str(store_id),
        "occurred_at": T0.isoformat(),
        "lines": lines,
        **extra,
    }


async def quote(h: Harness, merchant_id: uuid.UUID, payload: dict[str, Any]) -> httpx.Response:
    return await h.client.post("/v1/orders/quote", json=payload, headers=h.auth(merchant_id))


async def place(h: Harness, merchant_id: uuid.UUID, payload: dict[str, Any]) -> httpx.Response:
    return await h.client.post(
        "/v1/orders",
        json=payload,
        headers={**h.auth(merchant_id), "Idempotency-Key": uuid.uuid4().hex},
    )


async def test_every_rule_type_quoted_then_placed_alike_and_recomputed(h: Harness) -> None:
    merchant = uuid.uuid4()
    store = await h.seed_store(merchant)
    member = await h.seed_member(merchant)  # level gold
    drinks = uuid.uuid4()
    tea = await product(h, merchant, 333, drinks)
    coke = await product(h, merchant, 250, drinks)
    bread = await product(h, merchant, 600)
    milk = await product(h, merchant, 500)
    soap = await product(h, merchant, 1999)
    # T0 is Sunday 20:00 in Shanghai: an evening window to 20:30 is on.
    evening = await create(
        h,
        hq(merchant),
        {
            "name": "Evening drinks",
            "rule": {"kind": "discount", "category_ids": [str(drinks)], "percent_off_bp": 2000},
            "days_of_week": [7],
            "time_from": "18:00",
            "time_until": "20:30",
        },
    )
    await create(
        h,
        hq(merchant),
        {
            "name": "Bread and milk",
            "rule": {
                "kind": "combo",
                "items": [
                    {"product_id": str(bread), "quantity": 1},
                    {"product_id": str(milk), "quantity": 1},
                ],
                "price": cny(1000),
            },
        },
    )
    await create(
        h,
        hq(merchant),
        {
            "name": "Gold members",
            "rule": {
                "kind": "member_price",
                "product_ids": [str(soap)],
                "level_percent_off_bp": {"gold": 500},
            },
        },
    )
    await create(
        h,
        hq(merchant),
        {
            "name": "Coke 2+1",
            "rule": {"kind": "buy_n_get_m", "product_ids": [str(coke)], "buy": 2, "get": 1},
            "stackable": True,
        },
    )
    await create(
        h,
        hq(merchant),
        {
            "name": "Spend 30 save 3",
            "rule": {
                "kind": "full_reduction",
                "tiers": [
                    {"threshold": cny(3000), "amount_off": cny(300)},
                    {"threshold": cny(9000), "amount_off": cny(1000)},
                ],
            },
            "stackable": True,
        },
    )
    await create(
        h,
        hq(merchant),
        {
            "name": "Yesterday's",
            "rule": {"kind": "discount", "product_ids": [str(soap)], "percent_off_bp": 9000},
            "ends_on": "2026-02-28",
        },
    )
    lines = [
        {"product_id": str(tea), "quantity": 3},
        {"product_id": str(coke), "quantity": 3},
        {"product_id": str(bread), "quantity": 1},
        {"product_id": str(milk), "quantity": 1},
        {"product_id": str(soap), "quantity": 1},
    ]
    payload = body(store, lines, member_id=str(member))
    quoted = await quote(h, merchant, payload)
    assert quoted.status_code == 200, quoted.text
    q = quoted.json()
    by_product = {line["product_id"]: line for line in q["lines"]}
    # Combo: 11.00 -> 10.00, 1.00 spread 600:500 -> 55 and 45.
    assert by_product[str(bread)]["adjustments"][0]["amount"]["amount"] == 55
    assert by_product[str(milk)]["adjustments"][0]["amount"]["amount"] == 45
    # Coke 2+1 (stage 2, stackable): one coke of three free. The evening 20% (stage 3, not
    # stackable) then skips coke, which a promotion touched, and takes tea alone: 20% of 9.99
    # = 1.998 -> 2.00.
    assert [a["amount"]["amount"] for a in by_product[str(coke)]["adjustments"]] == [250]
    assert by_product[str(tea)]["adjustments"][0]["amount"]["amount"] == 200
    # Gold: 5% of 19.99 = 0.9995 -> 1.00.
    assert by_product[str(soap)]["adjustments"][0]["amount"]["amount"] == 100
    # 满减 (stackable) may share only coke, the one line no exclusive promotion holds: 5.00
    # is below its threshold.
    rejected = {r["name"]: r["reason"] for r in q["rejected_promotions"]}
    assert rejected == {"Yesterday's": "ended", "Spend 30 save 3": "threshold_not_met"}
    applied = {p["name"]: p["amount"]["amount"] for p in q["promotions"]}
    assert applied == {
        "Bread and milk": 100,
        "Coke 2+1": 250,
        "Evening drinks": 200,
        "Gold members": 100,
    }
    assert q["discount_total"]["amount"] == 650
    assert q["total"]["amount"] == 999 + 750 + 600 + 500 + 1999 - 650
    # Nothing was written by the quote.
    placed = await place(h, merchant, payload)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["total"] == q["total"]
    assert order["discount_total"] == q["discount_total"]
    assert [line["discount"] for line in order["lines"]] == [
        line["discount"] for line in q["lines"]
    ]
    assert [line["adjustments"] for line in order["lines"]] == [
        line["adjustments"] for line in q["lines"]
    ]

    # An edit makes version 2; the order still recomputes to what it stored.
    edited = await h.client.put(
        f"/v1/promotions/{evening['id']}",
        json={
            "name": "Evening drinks",
            "rule": {"kind": "discount", "category_ids": [str(drinks)], "percent_off_bp": 5000},
            "days_of_week": [7],
            "time_from": "18:00",
            "time_until": "20:30",
            "version": 1,
        },
        headers={**hq(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2
    assert edited.json()["version_id"] != evening["version_id"]
    async with h.database.transaction() as session:
        stored = await session.get(Order, (merchant, uuid.UUID(order["id"])))
        assert stored is not None
        assert evening["version_id"] in stored.pricing["promotion_version_ids"]  # type: ignore[index]
        result = await recompute(session, stored)
    assert result is not None
    assert result.total == order["total"]["amount"]
    assert [p.discount for p in result.lines] == [
        line["discount"]["amount"] for line in order["lines"]
    ]
    # A new quote uses version 2.
    again = (await quote(h, merchant, {**payload, "id": str(uuid.uuid4())})).json()
    assert again["total"]["amount"] < q["total"]["amount"]


async def test_full_reduction_and_stacking_placed_to_the_fen(h: Harness) -> None:
    merchant = uuid.uuid4()
    store = await h.seed_store(merchant)
    a = await product(h, merchant, 3000)
    b = await product(h, merchant, 2001)
    await create(
        h,
        hq(merchant),
        {
            "name": "50 save 10",
            "rule": {
                "kind": "full_reduction",
                "tiers": [{"threshold": cny(5000), "amount_off": cny(1000)}],
            },
        },
    )
    placed = await place(
        h,
        merchant,
        body(store, [{"product_id": str(a), "quantity": 1}, {"product_id": str(b), "quantity": 1}]),
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert [line["discount"]["amount"] for line in order["lines"]] == [600, 400]
    assert order["total"]["amount"] == 4001
    # Tax is on what was charged: 6% included in 24.00 and 16.01.
    assert [line["total"]["amount"] for line in order["lines"]] == [2400, 1601]


async def test_store_managers_make_promotions_for_their_own_store_only(h: Harness) -> None:
    merchant = uuid.uuid4()
    mine = await h.seed_store(merchant)
    theirs = await h.seed_store(merchant)
    rule = {"kind": "discount", "product_ids": [str(uuid.uuid4())], "percent_off_bp": 1000}
    own = await create(
        h, manager(merchant, mine), {"name": "Mine", "rule": rule, "store_ids": [str(mine)]}
    )
    assert own["store_ids"] == [str(mine)]
    refused = await create(
        h,
        manager(merchant, mine),
        {"name": "Theirs", "rule": rule, "store_ids": [str(theirs)]},
        expect=403,
    )
    assert refused["code"] == "promotion_scope"
    everywhere = await create(h, manager(merchant, mine), {"name": "All", "rule": rule}, 403)
    assert everywhere["code"] == "promotion_scope"
    other = await create(
        h, hq(merchant), {"name": "Theirs", "rule": rule, "store_ids": [str(theirs)]}
    )
    wide = await create(h, hq(merchant), {"name": "All", "rule": rule})
    # The manager sees their store's and the merchant-wide ones, not the other store's.
    response = await h.client.get(f"/v1/promotions/{other['id']}", headers=manager(merchant, mine))
    assert response.status_code == 404
    listed = await h.client.get("/v1/promotions", headers=manager(merchant, mine))
    assert {p["id"] for p in listed.json()["items"]} == {own["id"], wide["id"]}
    # ... and may not change the merchant-wide one.
    response = await h.client.put(
        f"/v1/promotions/{wide['id']}",
        json={"name": "Mine now", "rule": rule, "store_ids": [str(mine)], "version": 1},
        headers=manager(merchant, mine),
    )
    assert response.status_code == 403
    assert response.json()["code"] == "promotion_scope"
    # Another merchant's promotion does not exist for this one.
    stranger = uuid.uuid4()
    for path in (f"/v1/promotions/{own['id']}", f"/v1/promotions/{own['id']}/versions"):
        response = await h.client.get(path, headers=hq(stranger))
        assert response.status_code == 404
    response = await h.client.put(
        f"/v1/promotions/{own['id']}",
        json={"name": "x", "rule": rule, "version": 1},
        headers=hq(stranger),
    )
    assert response.status_code == 404
    # Without the scope: 403.
    response = await h.client.post(
        "/v1/promotions",
        json={"name": "x", "rule": rule},
        headers={**hq(merchant, MANAGER), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 403
    # A promotion for a store of another merchant is an unknown store.
    response = await h.client.post(
        "/v1/promotions",
        json={"name": "x", "rule": rule, "store_ids": [str(uuid.uuid4())]},
        headers={**hq(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_store"
    # Other merchant's store-scoped promotion never prices this merchant's orders.
    product_id = await product(h, stranger, 1000)
    await create(
        h,
        hq(stranger),
        {
            "name": "Stranger's",
            "rule": {"kind": "discount", "product_ids": [str(product_id)], "percent_off_bp": 5000},
        },
    )
    own_product = await product(h, merchant, 1000)
    q = await quote(h, merchant, body(mine, [{"product_id": str(own_product), "quantity": 1}]))
    assert q.json()["discount_total"]["amount"] == 0


async def test_versions_and_stale_edits(h: Harness) -> None:
    merchant = uuid.uuid4()
    rule = {"kind": "discount", "product_ids": [str(uuid.uuid4())], "percent_off_bp": 1000}
    made = await create(h, hq(merchant), {"name": "v1", "rule": rule})
    update = {"name": "v2", "rule": rule, "version": 1, "active": False}
    response = await h.client.put(f"/v1/promotions/{made['id']}", json=update, headers=hq(merchant))
    assert response.status_code == 200, response.text
    stale = await h.client.put(f"/v1/promotions/{made['id']}", json=update, headers=hq(merchant))
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_mismatch"
    versions = await h.client.get(f"/v1/promotions/{made['id']}/versions", headers=hq(merchant))
    assert [(v["version"], v["name"], v["active"]) for v in versions.json()] == [
        (1, "v1", True),
        (2, "v2", False),
    ]


@pytest.mark.parametrize(
    ("rule", "extra", "error"),
    [
        ({"kind": "discount", "percent_off_bp": 1000}, {}, "targets_required"),
        (
            {"kind": "discount", "product_ids": ["PRODUCT"], "percent_off_bp": 10_001},
            {},
            "out_of_range",
        ),
        (
            {
                "kind": "discount",
                "product_ids": ["PRODUCT"],
                "percent_off_bp": 10,
                "amount_off": cny(1),
            },
            {},
            "percent_or_amount",
        ),
        ({"kind": "full_reduction", "tiers": []}, {}, "too_short"),
        (
            {"kind": "full_reduction", "tiers": [{"threshold": cny(100), "amount_off": cny(200)}]},
            {},
            "saving_above_threshold",
        ),
        (
            {"kind": "full_reduction", "tiers": [{"threshold": cny(100), "amount_off": 5}]},
            {},
            "expected_object",
        ),
        (
            {"kind": "combo", "items": [{"product_id": "PRODUCT", "quantity": 1}], "price": cny(1)},
            {},
            "combo_too_small",
        ),
        (
            {"kind": "buy_n_get_m", "product_ids": ["PRODUCT"], "buy": 0, "get": 1},
            {},
            "out_of_range",
        ),
        ({"kind": "member_price", "level_percent_off_bp": {}}, {}, "member_terms_required"),
        ({"kind": "raffle"}, {}, "invalid"),
        (
            {"kind": "discount", "product_ids": ["PRODUCT"], "percent_off_bp": 10},
            {"time_from": "18:00"},
            "time_range",
        ),
        (
            {"kind": "discount", "product_ids": ["PRODUCT"], "percent_off_bp": 10},
            {"starts_on": "2026-03-02", "ends_on": "2026-03-01"},
            "date_range",
        ),
        (
            {"kind": "discount", "product_ids": ["PRODUCT"], "percent_off_bp": 10},
            {"days_of_week": [0]},
            "out_of_range",
        ),
    ],
)
async def test_bad_promotions_are_422_with_a_code(
    h: Harness, rule: dict[str, Any], extra: dict[str, Any], error: str
) -> None:
    merchant = uuid.uuid4()
    product_id = str(uuid.uuid4())
    filled = {k: ([product_id] if v == ["PRODUCT"] else v) for k, v in rule.items()}
    if "items" in filled:
        filled["items"] = [{**i, "product_id": product_id} for i in filled["items"]]
    problem = await create(h, hq(merchant), {"name": "Bad", "rule": filled, **extra}, expect=422)
    assert error in {e["code"] for e in problem["errors"]}, problem


async def test_member_level_keeps_the_highest_version(h: Harness) -> None:
    merchant = uuid.uuid4()
    member = await h.seed_member(merchant)
    for version, level in ((3, "platinum"), (2, "silver"), (3, "bronze")):
        updated = MemberUpdated(member_id=member, version=version, level=level)
        await h.publish_applied(h.envelope(updated, merchant, member, "members"))
    # An update may reach orders before the member's creation.
    early = uuid.uuid4()
    await h.publish_applied(
        h.envelope(
            MemberUpdated(member_id=early, version=1, level="silver"), merchant, early, "members"
        )
    )
    async with h.database.transaction() as session:
        levels = dict(
            (
                await session.execute(
                    sa.select(Member.member_id, Member.level).where(Member.merchant_id == merchant)
                )
            ).all()
        )
    assert levels == {member: "platinum", early: "silver"}


async def test_synced_orders_keep_what_the_till_charged(h: Harness) -> None:
    merchant = uuid.uuid4()
    store = await h.seed_store(merchant)
    item = await product(h, merchant, 1000)
    await create(
        h,
        hq(merchant),
        {
            "name": "Half off",
            "rule": {"kind": "discount", "product_ids": [str(item)], "percent_off_bp": 5000},
        },
    )
    order_id = str(uuid.uuid4())
    synced = await h.client.post(
        "/v1/orders/sync",
        json={
            "store_id": str(store),
            "till_id": "till-1",
            "orders": [
                {
                    "id": order_id,
                    "lines": [
                        {
                            "product_id": str(item),
                            "quantity": 1,
                            "unit_price": cny(1000),
                            "discount": cny(100),
                        }
                    ],
                    "occurred_at": T0.isoformat(),
                }
            ],
        },
        headers={**h.auth(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert synced.status_code == 200, synced.text
    order = await h.order(merchant, order_id)
    assert order["source"] == "offline"
    assert order["total"]["amount"] == 900
    assert order["lines"][0]["discount"]["amount"] == 100
    async with h.database.transaction() as session:
        stored = await session.get(Order, (merchant, uuid.UUID(order_id)))
        assert stored is not None
        assert stored.pricing is None
        assert await recompute(session, stored) is None
