"""A day of marketing across the services on the real broker.

HQ sets up a timed 20% off drinks, a 满减 (spend 50.00 save 5.00, spend 100.00 save 15.00), a
"gold" level with 5% off (a member price promotion by level) and 1.5x points, a coupon
template given on sign-up ("10.00 off 30.00") and a recharge bonus "100 → +10". A cashier
signs a member up at the till with the role's default scopes, takes a 100.00 cash recharge
(110.00 on the account) and rings up:

1. drinks and bread with the sign-up coupon: quoted, placed for the quoted total, paid 40.00
   from stored value and the rest in cash; the coupon ends `redeemed` in members, the stock
   leaves the shelf, the points are awarded;
2. two tills place an order with one other coupon at the same moment: exactly one gets it;
   the winner is cancelled and members shows the coupon `issued` again;
3. the coupon is used again, the order paid wholly from stored value and refunded in full:
   the balance and the coupon come back;
4. an order is cancelled while members has not yet answered its stored-value spend: the
   payment fails, the debit goes back to the account, and the order counts no money;
5. two tills spend the account at the same moment for more than it holds: one is debited,
   the other refused and paid in cash.

Every relay then publishes its whole outbox again, and the books must not move.

At the end orders, payments and members balance to the fen against figures worked out by hand
from the pricing rules in docs/api/orders.md."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from identity.common.permissions import ROLE_DEFAULT_SCOPES
from orders.models import CatalogProduct
from orders.models import Member as OrdersMember
from orders.models import Store as OrdersStore
from payments.models import OrderReplica
from servicekit.auth import Role

from .conftest import Merchant, Staff, System, wait_for

pytestmark = pytest.mark.timeout(240)

TEA, JUICE, BREAD = "tea", "juice", "bread"
PRICES = {TEA: 1200, JUICE: 800, BREAD: 2500}
RECEIVED = {TEA: 50, JUICE: 50, BREAD: 50}


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def keyed(staff: Staff, key: str) -> dict[str, str]:
    return {**staff.headers, "Idempotency-Key": key}


class Day:
    """The merchant's ids and the reads the test repeats."""

    def __init__(self, system: System, merchant: Merchant) -> None:
        self.system = system
        self.merchant = merchant
        self.products: dict[str, str] = {}
        self.member_id = ""

    def line(self, name: str, quantity: int) -> dict[str, Any]:
        return {"product_id": self.products[name], "quantity": quantity}

    def order_body(
        self,
        order_id: str,
        lines: list[dict[str, Any]],
        coupon_ids: list[str] | None,
        occurred_at: datetime | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": order_id,
            "channel": "pos",
            "store_id": self.merchant.store_id,
            "member_id": self.member_id,
            "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
            "lines": lines,
        }
        if coupon_ids:
            body["coupon_ids"] = coupon_ids
        return body

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.system.orders.client.get(
            f"/v1/orders/{order_id}", headers=self.merchant.cashier.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_order(self, order_id: str, status: str) -> dict[str, Any]:
        async def reached() -> bool:
            return bool((await self.order(order_id))["status"] == status)

        await wait_for(reached, f"order {order_id} {status}")
        return await self.order(order_id)

    async def pay(self, order_id: str, method: str, amount: int, key: str) -> dict[str, Any]:
        body: dict[str, Any] = {"order_id": order_id, "method": method, "amount": cny(amount)}
        if method == "stored_value":
            body["member_id"] = self.member_id
        response = await self.system.payments.client.post(
            "/v1/payments", json=body, headers=keyed(self.merchant.cashier, key)
        )
        assert response.status_code == 201, response.text
        payment: dict[str, Any] = response.json()
        return payment

    async def wait_payment(self, payment_id: str, status: str) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            response = await self.system.payments.client.get(
                f"/v1/payments/{payment_id}", headers=self.merchant.cashier.headers
            )
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        async def reached() -> bool:
            return bool((await read())["status"] == status)

        try:
            await wait_for(reached, f"payment {payment_id} {status}")
        except AssertionError as missed:
            raise AssertionError(f"{missed}; it is {await read()}") from None
        return await read()

    async def coupon(self, coupon_id: str) -> dict[str, Any]:
        response = await self.system.members.client.get(
            f"/v1/members/{self.member_id}/coupons/{coupon_id}",
            headers=self.merchant.cashier.headers,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_coupon(
        self, coupon_id: str, state: str, order_id: str | None, what: str
    ) -> dict[str, Any]:
        async def reached() -> bool:
            coupon = await self.coupon(coupon_id)
            return bool(coupon["state"] == state and coupon["order_id"] == order_id)

        await wait_for(reached, what)
        return await self.coupon(coupon_id)

    async def stored_value(self) -> dict[str, Any]:
        response = await self.system.members.client.get(
            f"/v1/members/{self.member_id}/stored-value",
            params={"limit": 100},
            headers=self.merchant.cashier.headers,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_balance(self, principal: int, bonus: int, what: str) -> None:
        async def reached() -> bool:
            account = (await self.stored_value())["account"]
            return account is not None and (
                account["principal"]["amount"],
                account["bonus"]["amount"],
            ) == (principal, bonus)

        await wait_for(reached, what)

    async def points(self) -> dict[str, Any]:
        response = await self.system.members.client.get(
            f"/v1/members/{self.member_id}/points",
            params={"limit": 50},
            headers=self.merchant.cashier.headers,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_points(self, balance: int, what: str) -> None:
        async def reached() -> bool:
            return bool((await self.points())["balance"] == balance)

        await wait_for(reached, what)

    async def on_hand(self) -> dict[str, int]:
        levels: dict[str, int] = {}
        for name, product_id in self.products.items():
            response = await self.system.inventory.client.get(
                f"/v1/stores/{self.merchant.store_id}/stock/{product_id}",
                headers=self.merchant.manager.headers,
            )
            assert response.status_code == 200, response.text
            levels[name] = response.json()["on_hand"]
        return levels

    async def wait_on_hand(self, expected: dict[str, int], what: str) -> None:
        async def reached() -> bool:
            return await self.on_hand() == expected

        await wait_for(reached, what)


def adjustments(order: dict[str, Any]) -> dict[str, list[tuple[str, str | None, int]]]:
    """Per product name: (source, promotion or coupon id, amount) in the order applied."""
    return {
        line["name"].lower(): [
            (a["source"], a["id"], a["amount"]["amount"]) for a in line["adjustments"]
        ]
        for line in order["lines"]
    }


async def test_a_day_of_promotions_coupons_and_stored_value(system: System) -> None:
    merchant = await system.onboard(cashier_scopes=sorted(ROLE_DEFAULT_SCOPES[Role.CASHIER]))
    hq, manager, cashier = merchant.hq, merchant.manager, merchant.cashier
    day = Day(system, merchant)
    store = uuid.UUID(merchant.store_id)

    # --- HQ's catalog, stock and rules -------------------------------------------------------
    async def store_known() -> bool:
        timezone = await system.orders.scalar(
            sa.select(OrdersStore.timezone).where(OrdersStore.store_id == store)
        )
        return timezone is not None

    await wait_for(store_known, "orders learns identity's store with its timezone")
    timezone = await system.orders.scalar(
        sa.select(OrdersStore.timezone).where(OrdersStore.store_id == store)
    )
    categories: dict[str, str] = {}
    for name in ("Drinks", "Bakery"):
        created = await system.inventory.client.post(
            "/v1/categories", json={"name": name}, headers=keyed(hq, f"cat-{name}-{merchant.id}")
        )
        assert created.status_code == 201, created.text
        categories[name] = created.json()["id"]
    for name, category in ((TEA, "Drinks"), (JUICE, "Drinks"), (BREAD, "Bakery")):
        created = await system.inventory.client.post(
            "/v1/products",
            json={
                "sku": name.upper(),
                "name": name.capitalize(),
                "price": cny(PRICES[name]),
                "category_id": categories[category],
            },
            headers=keyed(hq, f"product-{name}-{merchant.id}"),
        )
        assert created.status_code == 201, created.text
        day.products[name] = created.json()["id"]
    received = await system.inventory.client.post(
        f"/v1/stores/{merchant.store_id}/stock-in",
        json={
            "document": "GRN-MKT-01",
            "occurred_at": datetime.now(UTC).isoformat(),
            "lines": [{"product_id": day.products[n], "quantity": q} for n, q in RECEIVED.items()],
        },
        headers=keyed(manager, f"grn-{merchant.id}"),
    )
    assert received.status_code == 201, received.text

    async def catalog_known() -> bool:
        rows = await system.orders.scalar(
            sa.select(sa.func.count())
            .select_from(CatalogProduct)
            .where(
                CatalogProduct.merchant_id == uuid.UUID(merchant.id),
                CatalogProduct.category_id.is_not(None),
            )
        )
        return bool(rows == len(PRICES))

    await wait_for(catalog_known, "the catalog reaches orders with its categories")

    # The evening promotion runs from an hour ago to two hours ahead, store-local, today only.
    local_now = datetime.now(ZoneInfo(timezone))
    window_start = (local_now - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    window_end = window_start + timedelta(hours=3)
    promotions: dict[str, dict[str, Any]] = {
        "evening": {
            "name": "Evening drinks",
            "rule": {
                "kind": "discount",
                "category_ids": [categories["Drinks"]],
                "percent_off_bp": 2000,
            },
            "starts_on": (local_now - timedelta(days=1)).date().isoformat(),
            "ends_on": (local_now + timedelta(days=1)).date().isoformat(),
            "time_from": window_start.strftime("%H:%M"),
            "time_until": window_end.strftime("%H:%M"),
            "stackable": True,
            "priority": 10,
        },
        "gold": {
            "name": "Gold members",
            "rule": {"kind": "member_price", "level_percent_off_bp": {"gold": 500}},
            "stackable": True,
        },
        "spend_more": {
            "name": "Spend more save more",
            "rule": {
                "kind": "full_reduction",
                "tiers": [
                    {"threshold": cny(5000), "amount_off": cny(500)},
                    {"threshold": cny(10000), "amount_off": cny(1500)},
                ],
            },
            "stackable": True,
        },
    }
    promotion_ids: dict[str, str] = {}
    for name, definition in promotions.items():
        created = await system.orders.client.post(
            "/v1/promotions", json=definition, headers=keyed(hq, f"promo-{name}-{merchant.id}")
        )
        assert created.status_code == 201, created.text
        promotion_ids[name] = created.json()["id"]
    level = await system.members.client.post(
        "/v1/member-levels",
        json={
            "name": "gold",
            "rank": 1,
            "basis": "spend",
            "threshold": 0,
            "points_multiplier_bp": 15000,
            "discount_bp": 500,
        },
        headers=keyed(hq, f"level-{merchant.id}"),
    )
    assert level.status_code == 201, level.text
    template = await system.members.client.post(
        "/v1/coupon-templates",
        json={
            "name": "10 off 30",
            "kind": "full_reduction",
            "threshold": cny(3000),
            "amount_off": cny(1000),
            "valid_days": 30,
            "per_member_limit": 5,
            "issue_on_signup": True,
        },
        headers=keyed(hq, f"template-{merchant.id}"),
    )
    assert template.status_code == 201, template.text
    template_id = template.json()["id"]
    tier = await system.members.client.post(
        "/v1/stored-value/bonus-rules",
        json={"threshold": cny(10000), "bonus": cny(1000)},
        headers=hq.headers,
    )
    assert tier.status_code == 201, tier.text

    # --- a member signs up at the till and recharges -----------------------------------------
    registered = await system.members.client.post(
        "/v1/members",
        json={"phone": "+8613700001111", "name": "Wang Fang"},
        headers=keyed(cashier, f"member-{merchant.id}"),
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["level"] == "gold"
    day.member_id = registered.json()["id"]
    signup_coupons = await system.members.client.get(
        f"/v1/members/{day.member_id}/coupons", headers=cashier.headers
    )
    assert [(c["source"], c["state"]) for c in signup_coupons.json()["items"]] == [
        ("signup", "issued")
    ]
    first_coupon = signup_coupons.json()["items"][0]["id"]
    raced_coupon_response = await system.members.client.post(
        f"/v1/coupon-templates/{template_id}/issue",
        json={"member_id": day.member_id},
        headers=keyed(hq, f"issue-{day.member_id}"),
    )
    assert raced_coupon_response.status_code == 201, raced_coupon_response.text
    raced_coupon = raced_coupon_response.json()["id"]

    recharge = await system.payments.client.post(
        "/v1/payments",
        json={
            "purpose": "stored_value_recharge",
            "member_id": day.member_id,
            "store_id": merchant.store_id,
            "method": "cash",
            "amount": cny(10000),
        },
        headers=keyed(cashier, f"recharge-{day.member_id}"),
    )
    assert recharge.status_code == 201, recharge.text
    await day.wait_balance(10000, 1000, "the recharge is credited with its 10.00 bonus")

    async def member_ready() -> bool:
        known = await system.orders.scalar(
            sa.select(OrdersMember.level).where(OrdersMember.member_id == uuid.UUID(day.member_id))
        )
        return bool(known == "gold")

    await wait_for(member_ready, "orders learns the member and their level")

    async def coupons_ready() -> bool:
        from orders.models import Coupon as OrdersCoupon

        count = await system.orders.scalar(
            sa.select(sa.func.count())
            .select_from(OrdersCoupon)
            .where(
                OrdersCoupon.member_id == uuid.UUID(day.member_id),
                OrdersCoupon.terms.is_not(None),
            )
        )
        return bool(count == 2)

    await wait_for(coupons_ready, "orders holds both coupons' terms")

    # --- order 1: quoted, placed, paid with stored value and cash ----------------------------
    basket = [day.line(TEA, 2), day.line(JUICE, 1), day.line(BREAD, 2)]
    # By hand, docs/api/orders.md: subtotal 24.00 + 8.00 + 50.00 = 82.00.
    #   stage 3, evening (priority 10): 20% of the drinks: tea 4.80, juice 1.60;
    #   stage 3, gold 5% of what is left: tea 5% of 19.20 = 0.96, juice 5% of 6.40 = 0.32,
    #     bread 5% of 50.00 = 2.50;
    #   stage 4, 满减 on 18.24 + 6.08 + 47.50 = 71.82 (≥ 50.00): 5.00 spread by largest
    #     remainder: 1.27, 0.42, 3.31;
    #   coupon 10.00 off 30.00 on 16.97 + 5.66 + 44.19 = 66.82: 2.54, 0.85, 6.61.
    expected_lines = {
        TEA: [
            ("promotion", promotion_ids["evening"], 480),
            ("promotion", promotion_ids["gold"], 96),
            ("promotion", promotion_ids["spend_more"], 127),
            ("coupon", first_coupon, 254),
        ],
        JUICE: [
            ("promotion", promotion_ids["evening"], 160),
            ("promotion", promotion_ids["gold"], 32),
            ("promotion", promotion_ids["spend_more"], 42),
            ("coupon", first_coupon, 85),
        ],
        BREAD: [
            ("promotion", promotion_ids["gold"], 250),
            ("promotion", promotion_ids["spend_more"], 331),
            ("coupon", first_coupon, 661),
        ],
    }
    order_1 = str(uuid.uuid4())
    body_1 = day.order_body(order_1, basket, [first_coupon])
    quote = await system.orders.client.post(
        "/v1/orders/quote", json=body_1, headers=cashier.headers
    )
    assert quote.status_code == 200, quote.text
    quoted = quote.json()
    assert (quoted["subtotal"], quoted["discount_total"], quoted["total"]) == (
        cny(8200),
        cny(2518),
        cny(5682),
    )
    assert adjustments(quoted) == expected_lines
    assert quoted["coupons"] == [{"coupon_id": first_coupon, "amount": cny(1000)}]
    assert quoted["rejected_coupons"] == []
    # Before the evening window the drinks pay full price: the schedule is really read (and
    # the coupon, issued only now, was not valid yet).
    early = day.order_body(order_1, basket, [first_coupon], window_start - timedelta(hours=2))
    off_hours = await system.orders.client.post(
        "/v1/orders/quote", json=early, headers=cashier.headers
    )
    assert off_hours.status_code == 200, off_hours.text
    assert (promotion_ids["evening"], "outside_schedule") in {
        (p["promotion_id"], p["reason"]) for p in off_hours.json()["rejected_promotions"]
    }
    assert off_hours.json()["rejected_coupons"] == [
        {"coupon_id": first_coupon, "reason": "coupon_not_yet_valid"}
    ]
    # Nothing was held by the quote: the coupon is still issued in members.
    assert (await day.coupon(first_coupon))["state"] == "issued"

    placed = await system.orders.client.post(
        "/v1/orders", json=body_1, headers=keyed(cashier, f"place-{order_1}")
    )
    assert placed.status_code == 201, placed.text
    assert {k: placed.json()[k] for k in ("subtotal", "discount_total", "total")} == {
        k: quoted[k] for k in ("subtotal", "discount_total", "total")
    }
    assert adjustments(placed.json()) == expected_lines
    await day.wait_coupon(first_coupon, "reserved", order_1, "members sees the coupon held")

    from_account = await day.pay(order_1, "stored_value", 4000, f"sv-{order_1}")
    assert from_account["status"] == "pending"
    await day.wait_payment(from_account["id"], "succeeded")
    cash_1 = await day.pay(order_1, "cash", 5682 - 4000, f"cash-{order_1}")
    assert cash_1["status"] == "succeeded"
    paid_1 = await day.wait_order(order_1, "paid")
    assert paid_1["paid_total"] == cny(5682)
    await day.wait_coupon(first_coupon, "redeemed", order_1, "members marks the coupon redeemed")
    # Principal first: 40.00 of the 100.00 principal, none of the bonus.
    await day.wait_balance(6000, 1000, "the spend leaves the account")
    # floor(56.82 yuan x 1 point x 1.5 gold) = 85.
    await day.wait_points(85, "gold points for order 1")
    sold = {TEA: RECEIVED[TEA] - 2, JUICE: RECEIVED[JUICE] - 1, BREAD: RECEIVED[BREAD] - 2}
    await day.wait_on_hand(sold, "order 1 leaves the shelf")

    # --- order 2: two tills, one coupon -----------------------------------------------------
    two_breads = [day.line(BREAD, 2)]
    till_a, till_b = str(uuid.uuid4()), str(uuid.uuid4())
    race = await asyncio.gather(
        *(
            system.orders.client.post(
                "/v1/orders",
                json=day.order_body(order_id, two_breads, [raced_coupon]),
                headers=keyed(cashier, f"place-{order_id}"),
            )
            for order_id in (till_a, till_b)
        )
    )
    assert sorted(r.status_code for r in race) == [201, 409], [r.text for r in race]
    winner, loser = (till_a, till_b) if race[0].status_code == 201 else (till_b, till_a)
    lost = race[1] if winner == till_a else race[0]
    assert lost.json()["code"] == "coupon_unavailable"
    missing = await system.orders.client.get(f"/v1/orders/{loser}", headers=cashier.headers)
    assert missing.status_code == 404
    # Bread 50.00: gold 2.50, 满减 not reached on 47.50, coupon 10.00: 37.50.
    won = (race[0] if winner == till_a else race[1]).json()
    assert (won["subtotal"], won["discount_total"], won["total"]) == (
        cny(5000),
        cny(1250),
        cny(3750),
    )
    await day.wait_coupon(raced_coupon, "reserved", winner, "members sees the race's winner")
    cancelled = await system.orders.client.post(
        f"/v1/orders/{winner}/cancel", json={"reason": "customer left"}, headers=cashier.headers
    )
    assert cancelled.status_code == 200, cancelled.text
    await day.wait_coupon(raced_coupon, "issued", winner, "the cancelled order releases the coupon")

    # --- order 3: the released coupon again, paid from stored value, refunded in full -----------
    order_3 = str(uuid.uuid4())
    placed_3 = await system.orders.client.post(
        "/v1/orders",
        json=day.order_body(order_3, two_breads, [raced_coupon]),
        headers=keyed(cashier, f"place-{order_3}"),
    )
    assert placed_3.status_code == 201, placed_3.text
    assert placed_3.json()["total"] == cny(3750)
    spend_3 = await day.pay(order_3, "stored_value", 3750, f"sv-{order_3}")
    await day.wait_payment(spend_3["id"], "succeeded")
    await day.wait_order(order_3, "paid")
    await day.wait_coupon(raced_coupon, "redeemed", order_3, "order 3 redeems the coupon")
    await day.wait_balance(2250, 1000, "order 3 is paid from the principal")
    # floor(37.50 x 1.5) = 56 more points.
    await day.wait_points(85 + 56, "gold points for order 3")
    refund = await system.payments.client.post(
        f"/v1/payments/{spend_3['id']}/refunds",
        json={"amount": cny(3750), "reason": "wrong cake"},
        headers=keyed(manager, f"refund-{spend_3['id']}"),
    )
    assert refund.status_code == 201, refund.text
    await day.wait_payment(spend_3["id"], "refunded")
    await day.wait_order(order_3, "refunded")
    await day.wait_balance(6000, 1000, "the refund goes back to the principal")
    await day.wait_coupon(raced_coupon, "issued", order_3, "a full refund releases the coupon")
    await day.wait_points(85, "order 3's points are reversed")
    # Order 3's bread went; nothing was returned to the shelf.
    sold[BREAD] -= 2
    await day.wait_on_hand(sold, "order 3 leaves the shelf and the cancelled order does not")

    # --- order 4: cancelled while members has not yet answered its stored-value spend ---------
    await system.members.stop_consumer("stored-value")
    order_4 = str(uuid.uuid4())
    placed_4 = await system.orders.client.post(
        "/v1/orders",
        json=day.order_body(order_4, two_breads, [raced_coupon]),
        headers=keyed(cashier, f"place-{order_4}"),
    )
    assert placed_4.status_code == 201, placed_4.text
    assert placed_4.json()["total"] == cny(3750)
    spend_4 = await day.pay(order_4, "stored_value", 3750, f"sv-{order_4}")
    assert spend_4["status"] == "pending"
    # Orders holds no money for it yet: the cashier may cancel.
    cancelled_4 = await system.orders.client.post(
        f"/v1/orders/{order_4}/cancel", json={"reason": "changed mind"}, headers=cashier.headers
    )
    assert cancelled_4.status_code == 200, cancelled_4.text

    async def payments_sees_cancel() -> bool:
        state = await system.payments.scalar(
            sa.select(OrderReplica.state).where(OrderReplica.order_id == uuid.UUID(order_4))
        )
        return bool(state == "cancelled")

    await wait_for(payments_sees_cancel, "payments learns order 4 was cancelled")
    await system.members.restart_consumer("stored-value")
    # Members debits, payments finds the order cancelled: the payment fails and the debit is
    # given back to the account automatically.
    failed_4 = await day.wait_payment(spend_4["id"], "failed")
    assert failed_4["failure_reason"] == "order_cancelled"

    async def given_back() -> bool:
        listed = await system.payments.client.get(
            f"/v1/payments/{spend_4['id']}/refunds", headers=cashier.headers
        )
        assert listed.status_code == 200, listed.text
        return [(r["status"], r["amount"]) for r in listed.json()] == [("succeeded", cny(3750))]

    await wait_for(given_back, "members confirms the automatic refund of order 4's debit")

    # Orders shows the money that went back but counts no sale and no refund: the debit
    # never was a tender (payments' figures leave both out too).
    async def orders_shows_it() -> bool:
        refunds = (await day.order(order_4))["refunds"]
        return [(r["payment_id"], r["amount"]) for r in refunds] == [(spend_4["id"], cny(3750))]

    await wait_for(orders_shows_it, "orders learns of the money given back for order 4")
    shown_4 = await day.order(order_4)
    assert shown_4["status"] == "cancelled"
    assert shown_4["tenders"] == []
    assert [(r["payment_id"], r["amount"]) for r in shown_4["refunds"]] == [
        (spend_4["id"], cny(3750))
    ]
    assert (shown_4["paid_total"], shown_4["refunded_total"]) == (cny(0), cny(0))
    await day.wait_balance(6000, 1000, "order 4's spend is back on the account")
    await day.wait_coupon(raced_coupon, "issued", order_4, "order 4's cancel releases the coupon")

    # --- orders 5 and 6: two tills spend the account at the same moment -----------------------
    # Bread 50.00, gold 2.50 off, 满减 not reached on 47.50: 47.50 each; the account holds
    # 60.00 + 10.00, enough for one of them only.
    order_5, order_6 = str(uuid.uuid4()), str(uuid.uuid4())
    for order_id in (order_5, order_6):
        placed_n = await system.orders.client.post(
            "/v1/orders",
            json=day.order_body(order_id, two_breads, None),
            headers=keyed(cashier, f"place-{order_id}"),
        )
        assert placed_n.status_code == 201, placed_n.text
        assert placed_n.json()["total"] == cny(4750)
    spends = await asyncio.gather(
        *(
            day.pay(order_id, "stored_value", 4750, f"sv-{order_id}")
            for order_id in (order_5, order_6)
        )
    )

    async def both_answered() -> bool:
        statuses = []
        for spend in spends:
            response = await system.payments.client.get(
                f"/v1/payments/{spend['id']}", headers=cashier.headers
            )
            statuses.append(response.json()["status"])
        return sorted(statuses) == ["failed", "succeeded"]

    await wait_for(both_answered, "members debits one spend and refuses the other")
    outcomes = {}
    for order_id, spend in zip((order_5, order_6), spends, strict=True):
        response = await system.payments.client.get(
            f"/v1/payments/{spend['id']}", headers=cashier.headers
        )
        outcomes[order_id] = response.json()
    [refused_order] = [o for o, p in outcomes.items() if p["status"] == "failed"]
    assert outcomes[refused_order]["failure_reason"] == "insufficient_balance"
    await day.wait_balance(6000 - 4750, 1000, "one spend of 47.50 leaves the account")
    # The refused till takes cash instead.
    cash_n = await day.pay(refused_order, "cash", 4750, f"cash-{refused_order}")
    assert cash_n["status"] == "succeeded"
    for order_id in (order_5, order_6):
        await day.wait_order(order_id, "paid")
    # floor(47.50 x 1.5) = 71 points each.
    await day.wait_points(85 + 71 * 2, "gold points for orders 5 and 6")
    sold[BREAD] -= 4
    await day.wait_on_hand(sold, "orders 5 and 6 leave the shelf")

    # --- the books, to the fen ----------------------------------------------------------------
    await wait_for(system.drained, "every relay has published everything")

    async def check_the_books() -> None:
        orders = {
            oid: await day.order(oid)
            for oid in (order_1, winner, order_3, order_4, order_5, order_6)
        }
        assert {oid: o["status"] for oid, o in orders.items()} == {
            order_1: "paid",
            winner: "cancelled",
            order_3: "refunded",
            order_4: "cancelled",
            order_5: "paid",
            order_6: "paid",
        }
        assert sum(o["subtotal"]["amount"] for o in orders.values()) == 8200 + 5000 * 5
        assert (
            sum(o["discount_total"]["amount"] for o in orders.values()) == 2518 + 1250 * 3 + 250 * 2
        )
        assert sum(o["total"]["amount"] for o in orders.values()) == 5682 + 3750 * 3 + 4750 * 2
        paid_totals = sum(o["paid_total"]["amount"] for o in orders.values())
        refunded_totals = sum(o["refunded_total"]["amount"] for o in orders.values())
        assert (paid_totals, refunded_totals) == (5682 + 3750 + 4750 * 2, 3750)

        business_days = sorted({o["business_day"] for o in orders.values()})
        figures = await system.payments.client.get(
            "/v1/payments/figures",
            params={"business_day_from": business_days[0], "business_day_to": business_days[-1]},
            headers=manager.headers,
        )
        assert figures.status_code == 200, figures.text
        ledger = figures.json()
        assert ledger["pending_count"] == 0
        [currency] = ledger["currencies"]
        # The recharge is not a sale: only the orders' tenders count.
        assert (currency["captured"]["amount"], currency["refunded"]["amount"]) == (
            paid_totals,
            refunded_totals,
        )
        assert {
            m["method"]: (m["captured"]["amount"], m["refunded"]["amount"])
            for m in currency["by_method"]
        } == {"stored_value": (4000 + 3750 + 4750, 3750), "cash": (1682 + 4750, 0)}

        account = await day.stored_value()
        # recharge 100.00 + bonus 10.00 - 40.00 - 37.50 + 37.50 - 37.50 + 37.50 - 47.50
        assert account["account"]["balance"] == cny(
            10000 + 1000 - 4000 - 3750 + 3750 - 3750 + 3750 - 4750
        )
        assert (account["account"]["principal"], account["account"]["bonus"]) == (
            cny(1250),
            cny(1000),
        )
        assert sorted(e["kind"] for e in account["items"]) == sorted(
            ["recharge", "bonus", "spend", "spend", "refund", "spend", "refund", "spend"]
        )
        assert sum(e["principal"]["amount"] for e in account["items"]) == 1250
        assert sum(e["bonus"]["amount"] for e in account["items"]) == 1000

        points = await day.points()
        assert points["balance"] == 85 + 71 * 2
        assert sorted((e["kind"], e["order_id"], e["points"]) for e in points["items"]) == sorted(
            [
                ("award", order_1, 85),
                ("award", order_3, 56),
                ("reversal", order_3, -56),
                ("award", order_5, 71),
                ("award", order_6, 71),
            ]
        )
        member = await system.members.client.get(
            f"/v1/members/{day.member_id}", headers=cashier.headers
        )
        assert member.json()["points_balance"] == 85 + 71 * 2
        redeemed, released = await day.coupon(first_coupon), await day.coupon(raced_coupon)
        assert (redeemed["state"], redeemed["order_id"], redeemed["discount"]) == (
            "redeemed",
            order_1,
            cny(1000),
        )
        assert (released["state"], released["discount"]) == ("issued", None)

    await check_the_books()
    assert await system.dead_letters(merchant.id) == []

    # --- every relay publishes everything again: nothing may move ----------------------------
    before = system.duplicates_seen()
    expected_duplicates = await system.replay_everything()
    for group in (
        "orders.coupons",
        "members.coupons",
        "members.stored-value",
        "payments.stored-value",
    ):
        assert expected_duplicates.get(group, 0) > 0, (group, expected_duplicates)

    async def redelivered() -> bool:
        seen = system.duplicates_seen()
        return await system.drained() and all(
            seen[group] - before[group] >= n for group, n in expected_duplicates.items()
        )

    await wait_for(redelivered, "every consumer skips the republished events", timeout=45)
    await check_the_books()
    assert await system.dead_letters(merchant.id) == []
