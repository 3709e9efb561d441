"""Payments under faults: events out of order and across tenants, a payment that outruns its
order, providers that fail or answer late, retried refunds, returned goods and two tills at
once. Providers are never called inside a transaction and no money is kept for an order that
cannot take it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from contracts.events.orders import OrderCancelled, OrderPaid, Tender
from contracts.ids import new_id
from contracts.money import Money
from payments.payment.reconcile import reconcile_pending
from payments.providers.base import (
    ProviderPayment,
    ProviderRefund,
    ProviderRefundResult,
    ProviderResult,
)

from .conftest import Harness, eventually, placed_event


def cny(amount: int) -> dict[str, object]:
    return {"amount": amount, "currency": "CNY"}


def paid_event(order_id: uuid.UUID, store: uuid.UUID, total: int) -> OrderPaid:
    placed = placed_event(order_id, store, total)
    return OrderPaid(
        order_id=order_id,
        store_id=store,
        channel="pos",
        lines=placed.lines,
        subtotal=placed.subtotal,
        discount_total=placed.discount_total,
        total=placed.total,
        tenders=[Tender(payment_id=new_id(), method="cash", amount=Money.of(total, "CNY"))],
        occurred_at=datetime.now(UTC),
        paid_at=datetime.now(UTC),
    )


async def _payments_of(harness: Harness, order_id: uuid.UUID) -> list[dict[str, Any]]:
    async with harness.app.state.database.transaction() as session:
        rows = await session.execute(
            sa.text("SELECT id, status FROM payments WHERE order_id = :o"), {"o": order_id}
        )
        return [dict(row._mapping) for row in rows]


async def _refunds(harness: Harness, merchant: uuid.UUID, payment_id: str) -> list[dict[str, Any]]:
    response = await harness.client.get(
        f"/v1/payments/{payment_id}/refunds", headers=harness.token(merchant)
    )
    assert response.status_code == 200, response.text
    refunds: list[dict[str, Any]] = response.json()
    return refunds


async def _settled_refunds(
    harness: Harness, merchant: uuid.UUID, payment_id: str
) -> list[dict[str, Any]]:
    async def settled() -> list[dict[str, Any]] | None:
        refunds = await _refunds(harness, merchant, payment_id)
        return refunds if refunds and all(r["status"] != "pending" for r in refunds) else None

    result: list[dict[str, Any]] = await eventually(settled)
    return result


def _soon(seconds: float = 60) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# --- the order replica ---------------------------------------------------------------------


async def test_cancel_before_place_leaves_a_tombstone_a_replay_cannot_reopen(
    harness: Harness,
) -> None:
    merchant, order_id, store = new_id(), new_id(), new_id()
    before = await harness.inbox_count()
    await harness.publish(OrderCancelled(order_id=order_id, store_id=store), merchant, order_id)
    await harness.publish(placed_event(order_id, store, 800), merchant, order_id)
    await harness.wait_inbox(before + 2)
    assert await harness.replica_state(order_id, merchant) == "cancelled"

    refused = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(800)}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "order_not_payable"

    # The whole window again, in order this time: still cancelled.
    before = await harness.inbox_count()
    await harness.publish(placed_event(order_id, store, 800), merchant, order_id)
    await harness.publish(OrderCancelled(order_id=order_id, store_id=store), merchant, order_id)
    await harness.wait_inbox(before + 2)
    assert await harness.replica_state(order_id, merchant) == "cancelled"


async def test_paid_never_goes_back_to_open(harness: Harness) -> None:
    merchant, order_id, store = new_id(), new_id(), new_id()
    before = await harness.inbox_count()
    await harness.publish(paid_event(order_id, store, 500), merchant, order_id)
    await harness.publish(placed_event(order_id, store, 500), merchant, order_id)
    await harness.wait_inbox(before + 2)
    assert await harness.replica_state(order_id, merchant) == "paid"
    refused = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(1)}
    )
    assert refused.json()["code"] == "order_not_payable"


async def test_another_merchants_paid_event_for_the_same_order_id_changes_nothing(
    harness: Harness,
) -> None:
    merchant, other = new_id(), new_id()
    order_id, store = await harness.place_order(merchant, 600)
    before = await harness.inbox_count()
    # Order ids are chosen by clients: merchant B may well use the same one.
    await harness.publish(paid_event(order_id, new_id(), 600), other, order_id)
    await harness.wait_inbox(before + 1)

    assert await harness.replica_state(order_id, merchant) == "open"
    assert await harness.replica_state(order_id, other) == "paid"
    paid = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(600)}
    )
    assert paid.status_code == 201, paid.text
    assert paid.json()["store_id"] == str(store)


# --- a payment that outruns its order ------------------------------------------------------


async def test_payment_right_after_its_order_reads_the_order_through(harness: Harness) -> None:
    merchant, order_id, store = new_id(), new_id(), new_id()
    harness.orders.add(merchant, order_id, store, 900)
    seen = len(harness.orders.requests)

    token = harness.token(merchant)
    response = await harness.pay(
        merchant,
        {"order_id": str(order_id), "method": "cash", "amount": cny(900)},
        headers=token,
    )

    assert response.status_code == 201, response.text
    assert response.json()["store_id"] == str(store)
    [request] = harness.orders.requests[seen:]
    assert request.url.path == f"/v1/orders/{order_id}"
    assert request.headers["Authorization"] == token["Authorization"]
    assert await harness.replica_state(order_id, merchant) == "open"
    # The placed event arriving afterwards changes nothing.
    before = await harness.inbox_count()
    await harness.publish(placed_event(order_id, store, 900), merchant, order_id)
    await harness.wait_inbox(before + 1)
    again = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(1)}
    )
    assert again.json()["code"] == "order_not_payable"


async def test_orders_down_answers_a_transient_503_that_a_retry_gets_past(
    harness: Harness,
) -> None:
    merchant, order_id, store = new_id(), new_id(), new_id()
    body = {"order_id": str(order_id), "method": "cash", "amount": cny(400)}
    harness.orders.down = True
    try:
        first = await harness.pay(merchant, body, key="till-7-0001")
    finally:
        harness.orders.down = False
    assert first.status_code == 503, first.text
    assert first.json()["code"] == "order_not_yet_known"
    assert first.headers["Retry-After"] == "1"

    # The event arrives; the till retries with the same key and is not replayed the 503.
    await harness.place_order(merchant, 400, store, order_id=order_id)
    retry = await harness.pay(merchant, body, key="till-7-0001")
    assert retry.status_code == 201, retry.text


async def test_only_orders_saying_so_makes_an_order_unknown(harness: Harness) -> None:
    merchant, other = new_id(), new_id()
    order_id, store = new_id(), new_id()
    harness.orders.add(merchant, order_id, store, 300)
    # Another merchant's token: orders does not show it the order.
    theirs = await harness.pay(
        other, {"order_id": str(order_id), "method": "cash", "amount": cny(300)}
    )
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "order_not_found"
    assert await harness.replica_state(order_id, other) is None


async def test_a_read_through_cancelled_order_is_not_payable(harness: Harness) -> None:
    merchant, order_id, store = new_id(), new_id(), new_id()
    harness.orders.add(merchant, order_id, store, 300, status="cancelled")
    refused = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "alipay", "amount": cny(300)}
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_not_payable"


# --- providers outside transactions --------------------------------------------------------


async def test_provider_error_keeps_the_pending_row_and_a_retry_resumes_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 700)
    sandbox = harness.sandbox
    real_create = sandbox.create
    attempts: list[uuid.UUID] = []

    async def unreachable_once(payment: ProviderPayment) -> ProviderResult:
        attempts.append(payment.payment_id)
        if len(attempts) == 1:
            await real_create(payment)  # the provider got it; the answer is lost
            raise ConnectionError("reset by peer")
        return await real_create(payment)

    monkeypatch.setattr(sandbox, "create", unreachable_once)
    body = {
        "order_id": str(order_id),
        "method": "wechat_pay",
        "amount": cny(700),
        "sandbox": {"outcome": "late_success"},
    }

    failed = await harness.pay(merchant, body, key="qr-1")
    assert failed.status_code == 502
    assert failed.json()["code"] == "provider_unavailable"
    [row] = await _payments_of(harness, order_id)
    assert row["status"] == "pending"
    assert failed.json()["payment_id"] == str(row["id"])

    retry = await harness.pay(merchant, body, key="qr-1")
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == str(row["id"])
    assert retry.json()["status"] == "pending"
    assert attempts == [row["id"], row["id"]]
    assert len(harness.sandbox.transactions[row["id"]].reference) > 0
    assert harness.sandbox.capture(row["id"]) is True
    await harness.wait_status(merchant, retry.json()["id"], "succeeded")
    assert len(await _payments_of(harness, order_id)) == 1


async def test_provider_called_with_no_lock_on_the_order(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 1000)
    sandbox = harness.sandbox
    real_create = sandbox.create
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(payment: ProviderPayment) -> ProviderResult:
        entered.set()
        await release.wait()
        return await real_create(payment)

    monkeypatch.setattr(sandbox, "create", slow)
    qr = asyncio.create_task(
        harness.pay(merchant, {"order_id": str(order_id), "method": "alipay", "amount": cny(600)})
    )
    await asyncio.wait_for(entered.wait(), 10)
    # The provider is still thinking: a second till can pay the rest meanwhile, and cannot
    # pay more than the rest.
    too_much = await asyncio.wait_for(
        harness.pay(merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(401)}),
        10,
    )
    assert too_much.json()["code"] == "amount_exceeds_outstanding"
    cash = await asyncio.wait_for(
        harness.pay(merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(400)}),
        10,
    )
    assert cash.status_code == 201, cash.text
    release.set()
    assert (await qr).status_code == 201


async def test_two_tills_paying_at_once_never_exceed_the_total(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 1000)
    bodies = [
        {"order_id": str(order_id), "method": method, "amount": cny(700)}
        for method in ("alipay", "card", "cash", "wechat_pay")
    ]
    answers = await asyncio.gather(*(harness.pay(merchant, body) for body in bodies))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    taken = [row for row in await _payments_of(harness, order_id)]
    assert len(taken) == 1


async def test_timed_out_payment_is_cancelled_at_the_provider_before_it_fails(
    harness: Harness,
) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 500)
    created = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "card",
            "amount": cny(500),
            "sandbox": {"outcome": "late_success"},
        },
    )
    payment_id = uuid.UUID(created.json()["id"])
    database, providers = harness.app.state.database, harness.app.state.providers

    report = await reconcile_pending(
        database, providers, older_than=30, timeout=300, now=_soon(301)
    )

    assert report.cancelled_at_provider == 1
    calls = [op for op, ref in harness.sandbox.calls if ref == payment_id]
    assert calls[-2:] == ["query", "cancel"]
    failed = await harness.get(merchant, str(payment_id))
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "payment_timed_out"
    # Closed at the provider: the customer's late scan can no longer take money.
    assert harness.sandbox.capture(payment_id) is False


async def test_late_capture_after_failing_is_refunded(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 650)
    created = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "alipay",
            "amount": cny(650),
            "sandbox": {"outcome": "late_success"},
        },
    )
    payment_id = created.json()["id"]

    async def close_lost(payment_id: uuid.UUID) -> ProviderResult:
        # A provider whose close raced the customer's scan: it says closed, then captures.
        return ProviderResult(status="failed", reason="closed")

    monkeypatch.setattr(harness.sandbox, "cancel", close_lost)
    database, providers = harness.app.state.database, harness.app.state.providers
    await reconcile_pending(database, providers, older_than=30, timeout=300, now=_soon(301))
    assert (await harness.get(merchant, payment_id))["status"] == "failed"

    assert harness.sandbox.capture(uuid.UUID(payment_id)) is True

    [refund] = await _settled_refunds(harness, merchant, payment_id)
    assert refund["status"] == "succeeded"
    assert refund["reason"] == "late_capture"
    assert refund["amount"] == cny(650)
    assert harness.sandbox.transactions[uuid.UUID(payment_id)].refunded == 650
    payment = await harness.get(merchant, payment_id)
    assert payment["status"] == "failed"
    assert payment["refunded"] == cny(650)
    events = await harness.wait_events(payment_id, 2)
    assert [e["type"] for e in events] == ["payments.payment.failed", "payments.payment.refunded"]
    assert events[1]["payload"]["reason"] == "late_capture"
    # The capture is notified again: nothing more goes back.
    body, headers = harness.sandbox.notification_for(uuid.UUID(payment_id))
    again = await harness.client.post("/v1/providers/sandbox/notify", content=body, headers=headers)
    assert again.json()["result"] == "duplicate"
    assert len(await _refunds(harness, merchant, payment_id)) == 1


async def test_capture_for_a_cancelled_order_is_refunded_automatically(
    harness: Harness,
) -> None:
    merchant = new_id()
    order_id, store = await harness.place_order(merchant, 880)
    created = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "wechat_pay",
            "amount": cny(880),
            "sandbox": {"outcome": "late_success"},
        },
    )
    payment_id = created.json()["id"]
    await harness.cancel_order(merchant, order_id, store)

    assert harness.sandbox.capture(uuid.UUID(payment_id)) is True

    [refund] = await _settled_refunds(harness, merchant, payment_id)
    assert refund["status"] == "succeeded"
    assert refund["reason"] == "order_cancelled"
    assert harness.sandbox.transactions[uuid.UUID(payment_id)].refunded == 880
    payment = await harness.get(merchant, payment_id)
    assert payment["status"] == "failed"
    assert payment["failure_reason"] == "order_cancelled"
    events = await harness.wait_events(payment_id, 2)
    assert [e["type"] for e in events] == ["payments.payment.failed", "payments.payment.refunded"]


async def test_cancelled_order_pending_payment_is_cancelled_at_the_provider(
    harness: Harness,
) -> None:
    merchant = new_id()
    order_id, store = await harness.place_order(merchant, 450)
    created = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "unionpay",
            "amount": cny(450),
            "sandbox": {"outcome": "late_success"},
        },
    )
    payment_id = uuid.UUID(created.json()["id"])
    await harness.cancel_order(merchant, order_id, store)
    database, providers = harness.app.state.database, harness.app.state.providers

    # Not old enough for the periodic query, but its order is gone: handled at once.
    await reconcile_pending(database, providers, older_than=3600, timeout=7200)

    assert ("cancel", payment_id) in harness.sandbox.calls
    failed = await harness.get(merchant, str(payment_id))
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "order_cancelled"
    assert harness.sandbox.capture(payment_id) is False


async def test_money_taken_before_a_cancellation_was_known_goes_back(harness: Harness) -> None:
    merchant = new_id()
    order_id, store = await harness.place_order(merchant, 520)
    created = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "alipay", "amount": cny(520)}
    )
    payment_id = created.json()["id"]
    await harness.wait_status(merchant, payment_id, "succeeded")
    await harness.cancel_order(merchant, order_id, store)
    database, providers = harness.app.state.database, harness.app.state.providers

    report = await reconcile_pending(database, providers, older_than=30, timeout=300, now=_soon())
    assert report.refunds_opened == 1
    again = await reconcile_pending(database, providers, older_than=30, timeout=300, now=_soon())
    assert again.refunds_opened == 0

    [refund] = await _settled_refunds(harness, merchant, payment_id)
    assert refund["reason"] == "order_cancelled"
    assert refund["amount"] == cny(520)
    assert (await harness.get(merchant, payment_id))["status"] == "refunded"
    assert harness.sandbox.transactions[uuid.UUID(payment_id)].refunded == 520


# --- refunds -------------------------------------------------------------------------------


async def _paid_by_qr(
    harness: Harness, merchant: uuid.UUID, total: int, lines: list[tuple[uuid.UUID, int]]
) -> str:
    order_id, _ = await harness.place_order(merchant, total, lines=lines)
    created = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "alipay", "amount": cny(total)}
    )
    payment_id: str = created.json()["id"]
    await harness.wait_status(merchant, payment_id, "succeeded")
    return payment_id


async def test_retried_refund_refunds_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = new_id()
    payment_id = await _paid_by_qr(harness, merchant, 1000, [(new_id(), 1)])
    sandbox = harness.sandbox
    real_refund = sandbox.refund
    calls: list[uuid.UUID] = []

    async def answer_lost_once(refund: ProviderRefund) -> ProviderRefundResult:
        calls.append(refund.refund_id)
        result = await real_refund(refund)
        if len(calls) == 1:
            raise TimeoutError("the answer never came back")
        return result

    monkeypatch.setattr(sandbox, "refund", answer_lost_once)
    url = f"/v1/payments/{payment_id}/refunds"
    headers = {"Idempotency-Key": "refund-till-1", **harness.token(merchant)}

    lost = await harness.client.post(url, json={"amount": cny(300)}, headers=headers)
    assert lost.status_code == 502, lost.text
    [pending] = await _refunds(harness, merchant, payment_id)
    assert pending["status"] == "pending"
    # Reserved while pending: a second refund cannot take the same money.
    over = await harness.client.post(
        url,
        json={"amount": cny(701)},
        headers={"Idempotency-Key": "refund-till-2", **harness.token(merchant)},
    )
    assert over.json()["code"] == "refund_exceeds_captured"

    retry = await harness.client.post(url, json={"amount": cny(300)}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == pending["id"]
    assert retry.json()["status"] == "succeeded"
    assert calls == [uuid.UUID(pending["id"])] * 2
    assert sandbox.transactions[uuid.UUID(payment_id)].refunded == 300
    payment = await harness.get(merchant, payment_id)
    assert payment["refunded"] == cny(300)
    assert payment["status"] == "partially_refunded"
    events = await harness.wait_events(payment_id, 2)
    assert [e["type"] for e in events].count("payments.payment.refunded") == 1


async def test_pending_refund_is_carried_out_by_the_reconciler(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = new_id()
    payment_id = await _paid_by_qr(harness, merchant, 600, [(new_id(), 1)])
    sandbox = harness.sandbox
    real_refund = sandbox.refund

    async def down(refund: ProviderRefund) -> ProviderRefundResult:
        raise ConnectionError("provider down")

    monkeypatch.setattr(sandbox, "refund", down)
    refund_id = new_id()
    response = await harness.client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"refund_id": str(refund_id), "amount": cny(600)},
        headers={"Idempotency-Key": "r-down", **harness.token(merchant)},
    )
    assert response.status_code == 502
    monkeypatch.setattr(sandbox, "refund", real_refund)

    database, providers = harness.app.state.database, harness.app.state.providers
    report = await reconcile_pending(database, providers, older_than=30, timeout=300, now=_soon())
    assert report.refunds_done >= 1
    [refund] = await _refunds(harness, merchant, payment_id)
    assert refund["id"] == str(refund_id)
    assert refund["status"] == "succeeded"
    assert sandbox.transactions[uuid.UUID(payment_id)].refunded == 600
    assert (await harness.get(merchant, payment_id))["status"] == "refunded"


async def test_client_refund_id_maps_retries_with_new_keys_onto_one_refund(
    harness: Harness,
) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 500)
    created = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(500)}
    )
    url = f"/v1/payments/{created.json()['id']}/refunds"
    refund_id = str(new_id())
    body = {"refund_id": refund_id, "amount": cny(200)}
    first = await harness.client.post(
        url, json=body, headers={"Idempotency-Key": "a", **harness.token(merchant)}
    )
    second = await harness.client.post(
        url, json=body, headers={"Idempotency-Key": "b", **harness.token(merchant)}
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] == refund_id
    other = await harness.client.post(
        url,
        json={"refund_id": refund_id, "amount": cny(100)},
        headers={"Idempotency-Key": "c", **harness.token(merchant)},
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert (await harness.get(merchant, created.json()["id"]))["refunded"] == cny(200)


async def test_returned_goods_are_checked_against_the_order(harness: Harness) -> None:
    merchant = new_id()
    noodles, tea = new_id(), new_id()
    order_id, _ = await harness.place_order(merchant, 1200, lines=[(noodles, 2), (tea, 1)])
    created = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(1200)}
    )
    url = f"/v1/payments/{created.json()['id']}/refunds"

    async def refund(key: str, lines: list[dict[str, Any]]) -> Any:
        return await harness.client.post(
            url,
            json={"amount": cny(10), "returned_lines": lines},
            headers={"Idempotency-Key": key, **harness.token(merchant)},
        )

    stranger = await refund("r1", [{"product_id": str(new_id()), "quantity": 1}])
    assert stranger.status_code == 422
    assert stranger.json()["code"] == "returned_line_not_on_order"
    assert stranger.json()["errors"][0]["field"] == "returned_lines[0].product_id"

    too_many = await refund("r2", [{"product_id": str(noodles), "quantity": 3}])
    assert too_many.status_code == 422
    assert too_many.json()["code"] == "returned_quantity_exceeds_sold"

    split = await refund(
        "r3",
        [{"product_id": str(tea), "quantity": 1}, {"product_id": str(tea), "quantity": 1}],
    )
    assert split.json()["code"] == "returned_quantity_exceeds_sold"

    huge = await refund("r4", [{"product_id": str(noodles), "quantity": 2**63}])
    assert huge.status_code == 422
    assert huge.json()["errors"][0]["field"] == "returned_lines[0].quantity"

    one = await refund("r5", [{"product_id": str(noodles), "quantity": 1}])
    assert one.status_code == 201, one.text
    two_more = await refund("r6", [{"product_id": str(noodles), "quantity": 2}])
    assert two_more.json()["code"] == "returned_quantity_exceeds_sold"
    assert two_more.json()["returnable"] == 1
    last = await refund(
        "r7",
        [{"product_id": str(noodles), "quantity": 1}, {"product_id": str(tea), "quantity": 1}],
    )
    assert last.status_code == 201, last.text
    nothing_left = await refund("r8", [{"product_id": str(tea), "quantity": 1}])
    assert nothing_left.json()["code"] == "returned_quantity_exceeds_sold"


async def _forget_stored_answers(harness: Harness, key: str) -> None:
    """What a crash between the business commit and the stored answer leaves behind."""
    async with harness.app.state.database.transaction() as session:
        await session.execute(sa.text("DELETE FROM idempotency_keys WHERE key = :k"), {"k": key})


async def test_a_retry_whose_first_answer_was_lost_gets_the_same_payment_and_refund(
    harness: Harness,
) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 1000)
    body = {"order_id": str(order_id), "method": "cash", "amount": cny(1000)}
    first = await harness.pay(merchant, body, key="till-3-0042")
    assert first.status_code == 201
    await _forget_stored_answers(harness, "till-3-0042")

    retry = await harness.pay(merchant, body, key="till-3-0042")

    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == first.json()["id"]
    assert len(await _payments_of(harness, order_id)) == 1

    url = f"/v1/payments/{first.json()['id']}/refunds"
    headers = {"Idempotency-Key": "refund-3-0042", **harness.token(merchant)}
    refund = await harness.client.post(url, json={"amount": cny(400)}, headers=headers)
    assert refund.status_code == 201
    await _forget_stored_answers(harness, "refund-3-0042")
    again = await harness.client.post(url, json={"amount": cny(400)}, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == refund.json()["id"]
    assert (await harness.get(merchant, first.json()["id"]))["refunded"] == cny(400)
