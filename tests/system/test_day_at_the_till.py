"""A day at the till, end to end, on the real PostgreSQL and broker.

Identity signs a merchant up; its HQ admin, store manager and cashier sign in and every other
service verifies their tokens through identity's JWKS. HQ sets up the catalog and the fee
rate, the manager receives stock, the cashier registers a member and rings up four orders:
cash with change, a QR payment whose provider notifies twice, a declined QR payment settled in
cash, and an order paid part by QR and part in cash. The manager approves a partial refund with
a returned item (the cashier may not). Along the way inventory's consumer dies with offsets it
never committed and is restarted, payments' relay is stopped while payments are taken,
requests are resent with the same idempotency key and the same client order id, and finally
every relay publishes its whole outbox a second time. Stock, points, payments and orders must
come out exactly as the rules in docs/api say, every time.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from orders.models import CatalogProduct, PaymentFailure
from orders.models import Member as OrdersMember
from orders.models import Store as OrdersStore
from payments.models import OrderReplica

from .conftest import Merchant, Staff, System, wait_for

pytestmark = pytest.mark.timeout(240)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 3, 2)
CURRENCY = "CNY"
FEE_RATE_BPS = 60

PRODUCTS: dict[str, dict[str, Any]] = {
    "noodles": {"sku": "NDL-BEEF", "name": "Beef noodles", "price": 2800, "station": "hot"},
    "tea": {"sku": "TEA-JASMINE", "name": "Jasmine tea", "price": 1200},
    "dumplings": {"sku": "DMP-PORK-6", "name": "Pork dumplings (6)", "price": 1850},
    "cola": {"sku": "COLA-330", "name": "Cola 330 ml", "price": 500, "barcode": "4006381333931"},
}
RECEIVED = {"noodles": 50, "tea": 40, "dumplings": 30, "cola": 24}


# --- the rules, written from docs/api (independently of the services' code) -----------------


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": CURRENCY}


def at(hour: int, minute: int = 0) -> str:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=SHANGHAI).isoformat()


def half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def fee_of(amount: int, rate_bps: int) -> int:
    """payments.md: ``fee = amount.percent_bps(rate)`` rounded half-up; cash pays none."""
    return half_up(amount * rate_bps, 10_000)


def fee_refunded_after(fee: int, amount: int, refunded_so_far: int) -> int:
    """payments.md: the fee refunded so far is ``round_half_up(fee * refunded / amount)``."""
    return half_up(fee * refunded_so_far, amount)


def points_awarded(total: int, rule: dict[str, Any]) -> int:
    """members.md: ``floor(total * points_per_unit / unit_amount)``."""
    return int(total * rule["points_per_unit"] // rule["unit_amount"])


def points_reversed(awarded: int, refunded_total: int, order_total: int, fully: bool) -> int:
    """members.md: ``ceil(awarded * refunded_total / order_total)``, capped; all when fully
    refunded."""
    if fully:
        return awarded
    return min(awarded, -(-awarded * refunded_total // order_total))


# --- the till ----------------------------------------------------------------------------------


@dataclass
class Till:
    """The HTTP calls of the day, made as the staff who would make them."""

    system: System
    merchant: Merchant
    products: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def store(self) -> str:
        return str(self.merchant.store_id)

    def idempotent(self, staff: Staff, key: str) -> dict[str, str]:
        return {**staff.headers, "Idempotency-Key": key}

    async def place(
        self, order_id: str, lines: list[dict[str, Any]], *, when: str, member_id: str | None
    ) -> dict[str, Any]:
        body = {
            "id": order_id,
            "channel": "pos",
            "store_id": self.store,
            "member_id": member_id,
            "occurred_at": when,
            "lines": lines,
        }
        response = await self.system.orders.client.post(
            "/v1/orders",
            json=body,
            headers={**self.merchant.cashier.headers, "Idempotency-Key": f"order-{order_id}"},
        )
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        assert order["status"] == "placed"
        await wait_for(
            lambda: self.payments_replica(order_id, "open"), f"order {order_id} reaches payments"
        )
        return order

    async def wait_member_known(self, member_id: str) -> None:
        """Orders takes an order for a member only once members' event told it of the member."""

        async def known() -> bool:
            found = await self.system.orders.scalar(
                sa.select(OrdersMember.member_id).where(
                    OrdersMember.merchant_id == uuid.UUID(self.merchant.id),
                    OrdersMember.member_id == uuid.UUID(member_id),
                )
            )
            return found is not None

        await wait_for(known, f"orders learns of member {member_id}")

    async def payments_replica(self, order_id: str, state: str) -> bool:
        found = await self.system.payments.scalar(
            sa.select(OrderReplica.state).where(OrderReplica.order_id == uuid.UUID(order_id))
        )
        return bool(found == state)

    async def pay(self, order_id: str, key: str, **body: Any) -> dict[str, Any]:
        response = await self.system.payments.client.post(
            "/v1/payments",
            json={"order_id": order_id, **body},
            headers=self.idempotent(self.merchant.cashier, key),
        )
        assert response.status_code == 201, response.text
        payment: dict[str, Any] = response.json()
        return payment

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.system.orders.client.get(
            f"/v1/orders/{order_id}", headers=self.merchant.cashier.headers
        )
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order

    async def payment(self, payment_id: str) -> dict[str, Any]:
        response = await self.system.payments.client.get(
            f"/v1/payments/{payment_id}", headers=self.merchant.cashier.headers
        )
        assert response.status_code == 200, response.text
        payment: dict[str, Any] = response.json()
        return payment

    async def payments_of(self, order_id: str) -> list[dict[str, Any]]:
        response = await self.system.payments.client.get(
            "/v1/payments",
            params={"order_id": order_id, "limit": 50},
            headers=self.merchant.cashier.headers,
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def wait_order(self, order_id: str, status: str, paid_total: int) -> dict[str, Any]:
        async def reached() -> bool:
            order = await self.order(order_id)
            return bool(order["status"] == status and order["paid_total"]["amount"] == paid_total)

        await wait_for(reached, f"order {order_id} {status} with {paid_total} paid")
        return await self.order(order_id)

    async def wait_payment(self, payment_id: str, status: str) -> dict[str, Any]:
        async def reached() -> bool:
            return bool((await self.payment(payment_id))["status"] == status)

        await wait_for(reached, f"payment {payment_id} {status}")
        return await self.payment(payment_id)

    async def on_hand(self) -> dict[str, int]:
        levels: dict[str, int] = {}
        for name in PRODUCTS:
            response = await self.system.inventory.client.get(
                f"/v1/stores/{self.store}/stock/{self.products[name]}",
                headers=self.merchant.manager.headers,
            )
            assert response.status_code == 200, response.text
            levels[name] = response.json()["on_hand"]
        return levels

    async def wait_on_hand(self, expected: dict[str, int], what: str) -> None:
        async def reached() -> bool:
            return await self.on_hand() == expected

        await wait_for(reached, what)

    async def points(self, member_id: str) -> dict[str, Any]:
        response = await self.system.members.client.get(
            f"/v1/members/{member_id}/points",
            params={"limit": 50},
            headers=self.merchant.cashier.headers,
        )
        assert response.status_code == 200, response.text
        points: dict[str, Any] = response.json()
        return points

    async def wait_points(self, member_id: str, balance: int) -> None:
        async def reached() -> bool:
            return bool((await self.points(member_id))["balance"] == balance)

        await wait_for(reached, f"member {member_id} has {balance} points")

    def mark(self, phase: str, started: float) -> float:
        now = time.monotonic()
        self.timings[phase] = round(now - started, 2)
        return now


# --- the day -----------------------------------------------------------------------------------


async def test_a_day_at_the_till(system: System) -> None:
    clock = start = time.monotonic()
    merchant = await system.onboard()
    till = Till(system, merchant)
    hq, manager, cashier = merchant.hq, merchant.manager, merchant.cashier
    store = merchant.store_id

    # Orders learns the store from identity's events on the broker.
    async def store_known() -> bool:
        status = await system.orders.scalar(
            sa.select(OrdersStore.status).where(OrdersStore.store_id == uuid.UUID(store))
        )
        return bool(status == "active")

    await wait_for(store_known, "orders learns identity's store")
    clock = till.mark("onboarding", clock)

    # --- morning: HQ sets the fee rate, a settlement account and the catalog -----------------
    response = await system.payments.client.put(
        "/v1/settlement/config", json={"fee_rate_bps": FEE_RATE_BPS}, headers=hq.headers
    )
    assert response.status_code == 200, response.text
    response = await system.payments.client.post(
        "/v1/settlement/accounts",
        json={
            "kind": "bank",
            "institution": "ICBC",
            "account_number": "6222020200112233",
            "holder_name": "Noodle House",
        },
        headers={**hq.headers, "Idempotency-Key": "settlement-account-icbc"},
    )
    assert response.status_code == 201, response.text
    settlement_account = response.json()["id"]
    rule = (await system.members.client.get("/v1/points-rule", headers=hq.headers)).json()

    for name, spec in PRODUCTS.items():
        body: dict[str, Any] = {
            "sku": spec["sku"],
            "name": spec["name"],
            "price": cny(spec["price"]),
            "cost": cny(spec["price"] // 3),
        }
        if "station" in spec:
            body["kitchen_station"] = spec["station"]
        if "barcode" in spec:
            body["barcode"] = spec["barcode"]
        key = f"product-{name}-{merchant.id}"
        response = await system.inventory.client.post(
            "/v1/products", json=body, headers=till.idempotent(hq, key)
        )
        assert response.status_code == 201, response.text
        till.products[name] = response.json()["id"]
    # The same product sent again with its key: the first answer, no second product.
    again = await system.inventory.client.post(
        "/v1/products", json=body, headers=till.idempotent(hq, key)
    )
    assert again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == till.products[name]
    listed = await system.inventory.client.get("/v1/products", headers=manager.headers)
    assert sorted(p["sku"] for p in listed.json()["items"]) == sorted(
        p["sku"] for p in PRODUCTS.values()
    )

    # The manager receives the goods; the delivery note is sent twice (flaky network).
    stock_in = {
        "document": "GRN-20260302-01",
        "occurred_at": at(8, 30),
        "lines": [{"product_id": till.products[n], "quantity": q} for n, q in RECEIVED.items()],
    }
    received = await system.inventory.client.post(
        f"/v1/stores/{store}/stock-in",
        json=stock_in,
        headers=till.idempotent(manager, f"grn-{merchant.id}"),
    )
    assert received.status_code == 201, received.text
    resent = await system.inventory.client.post(
        f"/v1/stores/{store}/stock-in",
        json=stock_in,
        headers=till.idempotent(manager, f"grn-{merchant.id}"),
    )
    assert resent.status_code == 201
    assert resent.headers.get("idempotent-replayed") == "true"
    assert resent.json() == received.json()
    assert await till.on_hand() == RECEIVED

    # The catalog reaches orders' replica through inventory's events.
    async def catalog_replicated() -> bool:
        rows = await system.orders.scalar(
            sa.select(sa.func.count())
            .select_from(CatalogProduct)
            .where(CatalogProduct.merchant_id == uuid.UUID(merchant.id))
        )
        return bool(rows == len(PRODUCTS))

    await wait_for(catalog_replicated, "the catalog reaches orders")
    clock = till.mark("catalog and stock", clock)

    # --- a member at the till ------------------------------------------------------------------
    registered = await system.members.client.post(
        "/v1/members",
        json={"phone": "+86 138-0013-8000", "name": "Han Meimei"},
        headers=cashier.headers,
    )
    assert registered.status_code == 201, registered.text
    found = await system.members.client.get(
        "/v1/members/lookup", params={"phone": "+8613800138000"}, headers=cashier.headers
    )
    assert found.status_code == 200, found.text
    member_id = found.json()["id"]
    assert member_id == registered.json()["id"]

    await till.wait_member_known(member_id)

    sold: dict[str, Counter[str]] = {}
    totals: dict[str, int] = {}
    # Inventory's consumer will die after applying order 1 and before committing its offset.
    system.inventory.withhold_offset_commits("sales")

    # --- order 1: the member pays cash and gets change ----------------------------------------
    o1 = str(uuid.uuid4())
    lines1 = [
        {"product_id": till.products["noodles"], "quantity": 2, "notes": "less chili"},
        {"product_id": till.products["tea"], "quantity": 1},
    ]
    order1 = await till.place(o1, lines1, when=at(11, 42), member_id=member_id)
    totals[o1] = 2 * 2800 + 1200
    sold[o1] = Counter({"noodles": 2, "tea": 1})
    assert order1["total"] == cny(totals[o1])
    assert [line["kitchen_station"] for line in order1["lines"]] == ["hot", None]
    # The POS did not hear back and sends the same order again: the same order, not a second;
    # under the same key it is the first answer replayed, under a key lost in a restart the
    # order's own id still finds it.
    resend = {
        "id": o1,
        "channel": "pos",
        "store_id": store,
        "member_id": member_id,
        "occurred_at": at(11, 42),
        "lines": lines1,
    }
    replayed = await system.orders.client.post(
        "/v1/orders", json=resend, headers={**cashier.headers, "Idempotency-Key": f"order-{o1}"}
    )
    assert replayed.status_code == 201, replayed.text
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == order1
    resent = await system.orders.client.post(
        "/v1/orders",
        json=resend,
        headers={**cashier.headers, "Idempotency-Key": f"order-{o1}-after-restart"},
    )
    assert resent.status_code == 200, resent.text
    assert resent.json()["id"] == o1
    assert resent.json()["lines"] == order1["lines"]

    cash1 = await till.pay(
        o1, f"pay-{o1}-1", method="cash", amount=cny(totals[o1]), tendered=cny(10_000)
    )
    assert cash1["status"] == "succeeded"
    assert cash1["change"] == cny(10_000 - totals[o1])
    # The same payment resent under its key: replayed, not taken twice.
    replayed = await system.payments.client.post(
        "/v1/payments",
        json={"order_id": o1, "method": "cash", "amount": cny(totals[o1]), "tendered": cny(10_000)},
        headers=till.idempotent(cashier, f"pay-{o1}-1"),
    )
    assert replayed.status_code == 201
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert replayed.json()["id"] == cash1["id"]
    await till.wait_order(o1, "paid", totals[o1])
    expected_stock = dict(RECEIVED)
    expected_stock["noodles"] -= 2
    expected_stock["tea"] -= 1
    await till.wait_on_hand(expected_stock, "order 1 leaves the shelf")
    awarded = {o1: points_awarded(totals[o1], rule)}
    await till.wait_points(member_id, awarded[o1])
    clock = till.mark("order 1 (cash)", clock)

    # --- inventory's consumer dies (its last offsets never committed) -------------------------
    await system.inventory.stop_consumer("sales")

    # --- order 2: the member pays by QR; the provider notifies twice --------------------------
    o2 = str(uuid.uuid4())
    await till.place(
        o2,
        [
            {"product_id": till.products["dumplings"], "quantity": 1},
            {"barcode": PRODUCTS["cola"]["barcode"], "quantity": 2},
        ],
        when=at(12, 15),
        member_id=member_id,
    )
    totals[o2] = 1850 + 2 * 500
    sold[o2] = Counter({"dumplings": 1, "cola": 2})
    qr2 = await till.pay(
        o2,
        f"pay-{o2}-1",
        method="wechat_pay",
        amount=cny(totals[o2]),
        sandbox={"outcome": "succeed", "notify_times": 2},
    )
    assert qr2["status"] == "pending"
    assert qr2["qr_code"].startswith("sandbox://pay/")
    await till.wait_payment(qr2["id"], "succeeded")
    await system.payments.app.state.sandbox.idle()
    assert [
        (n.status, n.http_status, n.result)
        for n in system.notifications
        if n.payment_id == qr2["id"]
    ] == [("succeeded", 200, "applied"), ("succeeded", 200, "duplicate")]
    await till.wait_order(o2, "paid", totals[o2])
    awarded[o2] = points_awarded(totals[o2], rule)
    await till.wait_points(member_id, awarded[o1] + awarded[o2])
    # Members has seen order 2 paid; inventory, its consumer down, has not moved.
    assert await till.on_hand() == expected_stock

    # --- order 3: QR declined, the order stays placed; then cash while payments' relay is down
    o3 = str(uuid.uuid4())
    await till.place(
        o3,
        [{"product_id": till.products["tea"], "quantity": 3}],
        when=at(13, 5),
        member_id=None,
    )
    totals[o3] = 3 * 1200
    sold[o3] = Counter({"tea": 3})
    declined = await till.pay(
        o3, f"pay-{o3}-1", method="alipay", amount=cny(totals[o3]), sandbox={"outcome": "decline"}
    )
    failed = await till.wait_payment(declined["id"], "failed")
    assert failed["failure_reason"] == "declined"

    async def failure_recorded() -> bool:
        reason = await system.orders.scalar(
            sa.select(PaymentFailure.reason).where(
                PaymentFailure.payment_id == uuid.UUID(declined["id"])
            )
        )
        return bool(reason == "declined")

    await wait_for(failure_recorded, "orders records the declined payment")
    order3 = await till.order(o3)
    assert (order3["status"], order3["paid_total"], order3["tenders"]) == ("placed", cny(0), [])
    assert await till.payments_replica(o3, "open")

    await system.payments.stop_relay()
    cash3 = await till.pay(
        o3, f"pay-{o3}-2", method="cash", amount=cny(totals[o3]), tendered=cny(5_000)
    )
    assert (cash3["status"], cash3["change"]) == ("succeeded", cny(1_400))
    assert await system.payments.backlog() >= 1
    assert (await till.order(o3))["status"] == "placed"
    await system.payments.start_relay()
    await till.wait_order(o3, "paid", totals[o3])

    # --- inventory's consumer comes back and catches up ----------------------------------------
    restarted = await system.inventory.restart_consumer("sales")
    for order_id in (o2, o3):
        for name, quantity in sold[order_id].items():
            expected_stock[name] -= quantity
    await till.wait_on_hand(expected_stock, "inventory catches up after its restart")

    # Order 1's sale comes again (its offset was lost) and is recognised, not applied twice.
    async def redelivered_sale_skipped() -> bool:
        return bool(restarted.stats.duplicates >= 1)

    await wait_for(redelivered_sale_skipped, "the restarted consumer skips order 1's sale")
    assert await till.on_hand() == expected_stock
    clock = till.mark("orders 2-3 with a consumer and a relay down", clock)

    # --- order 4: part QR, part cash -------------------------------------------------------------
    o4 = str(uuid.uuid4())
    await till.place(
        o4,
        [
            {"product_id": till.products["noodles"], "quantity": 1},
            {"product_id": till.products["dumplings"], "quantity": 1},
            {"barcode": PRODUCTS["cola"]["barcode"], "quantity": 1},
        ],
        when=at(18, 40),
        member_id=None,
    )
    totals[o4] = 2800 + 1850 + 500
    sold[o4] = Counter({"noodles": 1, "dumplings": 1, "cola": 1})
    qr4_amount = 3_000
    qr4 = await till.pay(o4, f"pay-{o4}-1", method="unionpay", amount=cny(qr4_amount))
    await till.wait_payment(qr4["id"], "succeeded")
    await till.wait_order(o4, "placed", qr4_amount)
    cash4_amount = totals[o4] - qr4_amount
    cash4 = await till.pay(
        o4, f"pay-{o4}-2", method="cash", amount=cny(cash4_amount), tendered=cny(2_200)
    )
    assert cash4["change"] == cny(2_200 - cash4_amount)
    await till.wait_order(o4, "paid", totals[o4])
    for name, quantity in sold[o4].items():
        expected_stock[name] -= quantity
    await till.wait_on_hand(expected_stock, "order 4 leaves the shelf")
    clock = till.mark("order 4 (two tenders)", clock)

    # --- a partial refund of order 2: one cola comes back ----------------------------------------
    refund_amount = 500
    refund_body = {
        "amount": cny(refund_amount),
        "returned_lines": [{"product_id": till.products["cola"], "quantity": 1}],
        "reason": "flat",
    }
    refused = await system.payments.client.post(
        f"/v1/payments/{qr2['id']}/refunds",
        json=refund_body,
        headers=till.idempotent(cashier, f"refund-{o2}-cashier"),
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["missing_permission"] == "refunds:approve"
    too_much = await system.payments.client.post(
        f"/v1/payments/{qr2['id']}/refunds",
        json={"amount": cny(totals[o2] + 1)},
        headers=till.idempotent(manager, f"refund-{o2}-too-much"),
    )
    assert too_much.status_code == 409, too_much.text
    assert too_much.json()["code"] == "refund_exceeds_captured"
    refunded = await system.payments.client.post(
        f"/v1/payments/{qr2['id']}/refunds",
        json=refund_body,
        headers=till.idempotent(manager, f"refund-{o2}-1"),
    )
    assert refunded.status_code == 201, refunded.text
    refund = refunded.json()
    qr2_fee = fee_of(totals[o2], FEE_RATE_BPS)
    assert refund["fee_refunded"] == cny(fee_refunded_after(qr2_fee, totals[o2], refund_amount))
    await till.wait_order(o2, "partially_refunded", totals[o2])
    expected_stock["cola"] += 1
    reversed_o2 = points_reversed(awarded[o2], refund_amount, totals[o2], fully=False)
    balance = awarded[o1] + awarded[o2] - reversed_o2

    # A late payment for a paid order: payments' replica knows it is paid.
    await wait_for(lambda: till.payments_replica(o1, "paid"), "payments learns order 1 is paid")
    late = await system.payments.client.post(
        "/v1/payments",
        json={"order_id": o1, "method": "cash", "amount": cny(100)},
        headers=till.idempotent(cashier, f"pay-{o1}-late"),
    )
    assert late.status_code == 409, late.text
    assert late.json()["code"] == "order_not_payable"

    await till.wait_on_hand(expected_stock, "the returned cola is back on the shelf")
    await till.wait_points(member_id, balance)
    clock = till.mark("refund", clock)

    # --- the books ------------------------------------------------------------------------------
    expected_orders = {
        o1: ("paid", totals[o1], 0, [("cash", totals[o1])]),
        o2: ("partially_refunded", totals[o2], refund_amount, [("wechat_pay", totals[o2])]),
        o3: ("paid", totals[o3], 0, [("cash", totals[o3])]),
        o4: ("paid", totals[o4], 0, [("unionpay", qr4_amount), ("cash", cash4_amount)]),
    }

    def payment_row(
        method: str,
        status: str,
        amount: int,
        *,
        fee: int = 0,
        refunded: int = 0,
        fee_refunded: int = 0,
        tendered: int | None = None,
        failure: str | None = None,
    ) -> dict[str, Any]:
        cash = method == "cash"
        return {
            "method": method,
            "status": status,
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "refunded": refunded,
            "fee_refunded": fee_refunded,
            "change": tendered - amount if tendered is not None else None,
            "failure_reason": failure,
            "settlement_account_id": None if cash else settlement_account,
        }

    expected_payments = {
        o1: [payment_row("cash", "succeeded", totals[o1], tendered=10_000)],
        o2: [
            payment_row(
                "wechat_pay",
                "partially_refunded",
                totals[o2],
                fee=qr2_fee,
                refunded=refund_amount,
                fee_refunded=fee_refunded_after(qr2_fee, totals[o2], refund_amount),
            )
        ],
        o3: [
            {
                **payment_row("alipay", "failed", totals[o3], failure="declined"),
                # What a declined payment would have cost is not asserted: nothing was captured.
                "fee": None,
                "net": None,
            },
            payment_row("cash", "succeeded", totals[o3], tendered=5_000),
        ],
        o4: [
            payment_row("unionpay", "succeeded", qr4_amount, fee=fee_of(qr4_amount, FEE_RATE_BPS)),
            payment_row("cash", "succeeded", cash4_amount, tendered=2_200),
        ],
    }
    expected_points = [
        ("reversal", o2, -reversed_o2),
        ("award", o2, awarded[o2]),
        ("award", o1, awarded[o1]),
    ]
    returned = {o2: Counter({"cola": 1})}

    async def check_the_books() -> None:
        # Stock: received, minus sold, plus returned, per product.
        assert await till.on_hand() == expected_stock
        assert expected_stock == {
            name: RECEIVED[name]
            - sum(s[name] for s in sold.values())
            + sum(r[name] for r in returned.values())
            for name in PRODUCTS
        }
        response = await system.inventory.client.get(
            f"/v1/stores/{store}/movements", params={"limit": 200}, headers=manager.headers
        )
        movements = response.json()["items"]
        names = {pid: name for name, pid in till.products.items()}
        ledger = Counter(
            (m["kind"], m["reference"], names[m["product_id"]], m["quantity"]) for m in movements
        )
        expected_ledger = Counter(
            {("stock_in", "GRN-20260302-01", n, q): 1 for n, q in RECEIVED.items()}
            | {
                ("sale", order_id, n, -q): 1
                for order_id, counts in sold.items()
                for n, q in counts.items()
            }
            | {
                ("refund_return", order_id, n, q): 1
                for order_id, counts in returned.items()
                for n, q in counts.items()
            }
        )
        assert ledger == expected_ledger

        # Points: awarded per paid order, reversed for the refunded share.
        points = await till.points(member_id)
        assert points["balance"] == balance
        assert [(i["kind"], i["order_id"], i["points"]) for i in points["items"]] == (
            expected_points
        )
        member = await system.members.client.get(
            f"/v1/members/{member_id}", headers=cashier.headers
        )
        assert member.json()["points_balance"] == balance

        # Orders: state, totals, tenders, refunds.
        for order_id, (status, total, refunded_total, tenders) in expected_orders.items():
            order = await till.order(order_id)
            assert (
                order["status"],
                order["total"]["amount"],
                order["paid_total"]["amount"],
                order["refunded_total"]["amount"],
            ) == (status, total, total, refunded_total), order_id
            assert [(t["method"], t["amount"]["amount"]) for t in order["tenders"]] == tenders
        order2 = await till.order(o2)
        assert [
            (r["payment_id"], r["amount"]["amount"], r["returned_lines"]) for r in order2["refunds"]
        ] == [(qr2["id"], refund_amount, [{"product_id": till.products["cola"], "quantity": 1}])]
        listed = await system.orders.client.get(
            "/v1/orders", params={"store_id": store, "limit": 50}, headers=cashier.headers
        )
        assert sorted(o["id"] for o in listed.json()["items"]) == sorted(expected_orders)

        # Payments: one row per payment taken, each with its exact amounts.
        for order_id, rows in expected_payments.items():
            actual = []
            for p in await till.payments_of(order_id):
                row = {
                    "method": p["method"],
                    "status": p["status"],
                    "amount": p["amount"]["amount"],
                    "fee": p["fee"]["amount"],
                    "net": p["net"]["amount"],
                    "refunded": p["refunded"]["amount"],
                    "fee_refunded": p["fee_refunded"]["amount"],
                    "change": p["change"]["amount"] if p["change"] else None,
                    "failure_reason": p["failure_reason"],
                    "settlement_account_id": p["settlement_account_id"],
                }
                if p["status"] == "failed":
                    row["fee"] = row["net"] = None
                actual.append(row)
            assert actual == rows, order_id

    await check_the_books()
    clock = till.mark("books", clock)

    # --- every relay publishes everything again: nothing may move --------------------------------
    before = system.duplicates_seen()
    expected_duplicates = await system.replay_everything()
    assert expected_duplicates["inventory.sales"] >= len(sold) + len(returned)
    assert expected_duplicates["members.points"] >= len(sold) + len(returned)

    async def redelivered() -> bool:
        seen = system.duplicates_seen()
        return await system.drained() and all(
            seen[group] - before[group] >= n for group, n in expected_duplicates.items()
        )

    await wait_for(redelivered, "every consumer skips the republished events", timeout=45)
    await check_the_books()
    assert await system.dead_letters(merchant.id) == []
    till.mark("replay", clock)
    till.timings["total"] = round(time.monotonic() - start, 2)
    print("\nday at the till, seconds per phase:", till.timings)
