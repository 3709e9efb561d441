"""Payments' events applied in any order, any number of times: no money kept on a cancelled
order, tenders and refunds counted once, a failure never undoes a success, and only goods
that were sold and not yet returned are accepted back."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from contracts.events.orders import ReturnedLine
from contracts.events.payments import PaymentFailed, PaymentRefunded
from contracts.money import Money

CNY = "CNY"


def refunded(
    harness: Any,
    merchant: uuid.UUID,
    store: uuid.UUID,
    order_id: str,
    payment_id: uuid.UUID,
    amount: int,
    returned: list[tuple[uuid.UUID, int]] | None = None,
    *,
    refund_id: uuid.UUID | None = None,
) -> Any:
    """payments.payment.refunded; the same ``refund_id`` again is a re-announcement."""
    payload = PaymentRefunded(
        refund_id=refund_id or uuid.uuid4(),
        payment_id=payment_id,
        order_id=uuid.UUID(order_id),
        store_id=store,
        method="cash",
        amount=Money.of(amount, CNY),
        fee_refunded=Money.of(0, CNY),
        returned_lines=[ReturnedLine(product_id=p, quantity=q) for p, q in returned or []],
    )
    return harness.envelope(payload, merchant, payment_id, "payments")


async def place(harness: Any, merchant: uuid.UUID, store: uuid.UUID, lines: Any) -> Any:
    response = await harness.place(merchant, store, lines)
    assert response.status_code == 201, response.text
    return response.json()


async def cancel(harness: Any, merchant: uuid.UUID, order_id: str) -> Any:
    return await harness.client.post(
        f"/v1/orders/{order_id}/cancel", headers=harness.auth(merchant)
    )


async def test_cancelling_an_order_that_holds_money_is_refused(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=1000)
    order = await place(harness, merchant, store, [{"product_id": str(product_id), "quantity": 2}])
    payment = await harness.pay(merchant, store, order["id"], 100)
    await harness.applied(payment)
    refused = await cancel(harness, merchant, order["id"])
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "order_has_payments"
    assert problem["paid_total"] == {"amount": 100, "currency": CNY}
    assert (await harness.order(merchant, order["id"]))["status"] == "placed"
    # Once the money went back, the order can be cancelled.
    await harness.publish_applied(
        refunded(
            harness, merchant, store, order["id"], uuid.UUID(payment.payload["payment_id"]), 100
        )
    )
    done = await cancel(harness, merchant, order["id"])
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "cancelled"
    assert done.json()["refunds"][0]["announced"] is False
    assert await harness.outboxed("orders.order.refunded", merchant) == 0


async def test_a_capture_after_the_cancel_is_shown_not_paid(harness: Any) -> None:
    """Payments refunds a capture for a cancelled order by itself and says so with succeeded
    then refunded; orders shows both, in either order of arrival, and stays cancelled."""
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=1000)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    in_order = await place(harness, merchant, store, lines)
    reversed_ = await place(harness, merchant, store, lines)
    for order in (in_order, reversed_):
        assert (await cancel(harness, merchant, order["id"])).status_code == 200
    for order, refund_first in ((in_order, False), (reversed_, True)):
        payment_id = uuid.uuid4()
        succeeded = await harness.pay(
            merchant, store, order["id"], 1000, method="wechat_pay", payment_id=payment_id
        )
        money_back = refunded(harness, merchant, store, order["id"], payment_id, 1000)
        events = [money_back, succeeded] if refund_first else [succeeded, money_back]
        for event in events:
            await harness.publish_applied(event)
        shown = await harness.order(merchant, order["id"])
        assert shown["status"] == "cancelled"
        assert [t["payment_id"] for t in shown["tenders"]] == [str(payment_id)]
        assert [r["payment_id"] for r in shown["refunds"]] == [str(payment_id)]
        assert shown["paid_total"]["amount"] == 1000
        assert shown["refunded_total"]["amount"] == 1000
        assert shown["paid_at"] is None
    assert await harness.outboxed("orders.order.paid", merchant) == 0
    assert await harness.outboxed("orders.order.refunded", merchant) == 0


async def test_refund_before_its_success_ends_like_the_other_way_round(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=500)
    lines = [{"product_id": str(product_id), "quantity": 2}]
    results = []
    for refund_first in (False, True):
        order = await place(harness, merchant, store, lines)
        payment_id = uuid.uuid4()
        succeeded = await harness.pay(merchant, store, order["id"], 1000, payment_id=payment_id)
        partial = refunded(
            harness, merchant, store, order["id"], payment_id, 500, [(product_id, 1)]
        )
        for event in [partial, succeeded] if refund_first else [succeeded, partial]:
            await harness.publish_applied(event)
        shown = await harness.order(merchant, order["id"])
        results.append(
            (
                shown["status"],
                shown["paid_total"],
                shown["refunded_total"],
                [r["returned_lines"] for r in shown["refunds"]],
            )
        )
    assert results[0] == results[1]
    assert results[0][0] == "partially_refunded"
    assert results[0][3] == [[{"product_id": str(product_id), "quantity": 1}]]
    assert await harness.outboxed("orders.order.paid", merchant) == 2
    assert await harness.outboxed("orders.order.refunded", merchant) == 2
    refunds = await harness.wait_events("orders.order.refunded", merchant, 2)
    assert {e.payload["fully_refunded"] for e in refunds} == {False}


async def test_payments_before_the_order_settle_it_when_it_is_placed(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=700)
    order_id = uuid.uuid4()
    payment_id = uuid.uuid4()
    await harness.applied(
        await harness.pay(merchant, store, str(order_id), 700, payment_id=payment_id)
    )
    await harness.publish_applied(
        refunded(harness, merchant, store, str(order_id), payment_id, 700, [(product_id, 5)])
    )
    response = await harness.place(
        merchant, store, [{"product_id": str(product_id), "quantity": 1}], order_id=order_id
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "refunded"
    refund = (await harness.wait_events("orders.order.refunded", merchant, 1))[0]
    # Five came back according to payments; one was sold.
    assert refund.payload["returned_lines"] == [{"product_id": str(product_id), "quantity": 1}]
    assert refund.payload["fully_refunded"] is True
    assert await harness.outboxed("orders.order.paid", merchant) == 1


async def test_redelivered_and_reannounced_events_count_once(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=1000)
    order = await place(harness, merchant, store, [{"product_id": str(product_id), "quantity": 3}])
    payment_id, refund_id = uuid.uuid4(), uuid.uuid4()
    first = await harness.pay(merchant, store, order["id"], 3000, payment_id=payment_id)
    await harness.publish(first)  # the same event twice
    # The same payment under a new event id (a relay re-publishing a window).
    await harness.publish_applied(
        await harness.pay(merchant, store, order["id"], 3000, payment_id=payment_id)
    )
    for _ in range(2):
        await harness.publish_applied(
            refunded(
                harness,
                merchant,
                store,
                order["id"],
                payment_id,
                1000,
                [(product_id, 1)],
                refund_id=refund_id,
            )
        )
    shown = await harness.order(merchant, order["id"])
    assert shown["paid_total"]["amount"] == 3000
    assert shown["refunded_total"]["amount"] == 1000
    assert len(shown["tenders"]) == 1
    assert len(shown["refunds"]) == 1
    assert shown["status"] == "partially_refunded"
    assert await harness.outboxed("orders.order.paid", merchant) == 1
    assert await harness.outboxed("orders.order.refunded", merchant) == 1


async def test_a_failure_after_the_success_changes_nothing(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=1000)
    order = await place(harness, merchant, store, [{"product_id": str(product_id), "quantity": 1}])
    payment_id = uuid.uuid4()
    await harness.publish_applied(
        await harness.pay(merchant, store, order["id"], 1000, payment_id=payment_id)
    )
    failed = PaymentFailed(
        payment_id=payment_id,
        order_id=uuid.UUID(order["id"]),
        store_id=store,
        method="cash",
        amount=Money.of(1000, CNY),
        reason="timeout",
    )
    await harness.publish_applied(harness.envelope(failed, merchant, payment_id, "payments"))
    shown = await harness.order(merchant, order["id"])
    assert shown["status"] == "paid"
    assert shown["paid_total"]["amount"] == 1000


async def test_another_merchants_payment_never_touches_this_order(harness: Any) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    store = await harness.seed_store(owner)
    product_id = await harness.seed_product(owner, price=1000)
    order = await place(harness, owner, store, [{"product_id": str(product_id), "quantity": 1}])
    # The same client-chosen order id under another merchant: its payment is its own.
    await harness.publish_applied(await harness.pay(other, store, order["id"], 1000))
    shown = await harness.order(owner, order["id"])
    assert shown["status"] == "placed"
    assert shown["tenders"] == []


async def test_returned_goods_are_checked_against_the_order(harness: Any) -> None:
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    tea = await harness.seed_product(merchant, price=300, name="Tea")
    cake = await harness.seed_product(merchant, price=700, name="Cake")
    stranger = uuid.uuid4()
    order = await place(
        harness,
        merchant,
        store,
        [
            {"product_id": str(tea), "quantity": 2},
            {"product_id": str(cake), "quantity": 1},
            {"product_id": str(tea), "quantity": 1},
        ],
    )
    payment_id = uuid.uuid4()
    await harness.publish_applied(
        await harness.pay(merchant, store, order["id"], 1600, payment_id=payment_id)
    )
    # 3 teas sold: 2 now (the rest of the ask is not on the order or too many)...
    await harness.publish_applied(
        refunded(
            harness,
            merchant,
            store,
            order["id"],
            payment_id,
            300,
            [(tea, 2), (stranger, 3000), (cake, 4)],
        )
    )
    # ...then at most the one tea left, whatever the quantity asked (2^63 included).
    await harness.publish_applied(
        refunded(harness, merchant, store, order["id"], payment_id, 300, [(tea, 2**63)])
    )
    await harness.publish_applied(
        refunded(harness, merchant, store, order["id"], payment_id, 100, [(tea, 1)])
    )
    events = await harness.wait_events("orders.order.refunded", merchant, 3)
    assert [e.payload["returned_lines"] for e in events] == [
        [
            {"product_id": str(tea), "quantity": 2},
            {"product_id": str(cake), "quantity": 1},
        ],
        [{"product_id": str(tea), "quantity": 1}],
        [],
    ]
    shown = await harness.order(merchant, order["id"])
    assert shown["refunds"][0]["requested_returned_lines"] == [
        {"product_id": str(tea), "quantity": 2},
        {"product_id": str(stranger), "quantity": 3000},
        {"product_id": str(cake), "quantity": 4},
    ]
    assert [r["returned_lines"] for r in shown["refunds"]] == [
        e.payload["returned_lines"] for e in events
    ]
    assert harness.dead_letters("payments.payment.refunded", merchant) == []


async def test_payments_racing_their_orders_always_settle_them(harness: Any) -> None:
    """A payment recorded while its order is being placed is seen by one side or the other."""
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=400)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    order_ids = [uuid.uuid4() for _ in range(12)]

    async def place_and_pay(order_id: uuid.UUID) -> None:
        placed, _ = await asyncio.gather(
            harness.place(merchant, store, lines, order_id=order_id),
            harness.pay(merchant, store, str(order_id), 400),
        )
        assert placed.status_code == 201, placed.text

    await asyncio.gather(*(place_and_pay(order_id) for order_id in order_ids))
    for order_id in order_ids:
        await harness.wait_status(merchant, str(order_id), "paid")
    assert await harness.outboxed("orders.order.paid", merchant) == len(order_ids)


async def test_money_back_for_a_payment_that_failed_refunds_nothing(harness: Any) -> None:
    """Payments gives back by itself what it took for a payment that had failed (a capture
    after the cancel, or after a timeout) and announces that refund: it is shown on the order
    but was never a tender, so it neither counts in ``refunded_total`` nor refunds an order
    that is then paid another way."""
    merchant = uuid.uuid4()
    store = await harness.seed_store(merchant)
    product_id = await harness.seed_product(merchant, price=1000)
    lines = [{"product_id": str(product_id), "quantity": 1}]
    shift_id = uuid.uuid4()
    opened = await harness.client.post(
        "/v1/shifts",
        json={
            "id": str(shift_id),
            "store_id": str(store),
            "till_id": "till-1",
            "opening_float": {"amount": 0, "currency": CNY},
        },
        headers={**harness.auth(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert opened.status_code == 201, opened.text
    cancelled = await place(harness, merchant, store, lines)
    assert (await cancel(harness, merchant, cancelled["id"])).status_code == 200
    placed = await harness.place(merchant, store, lines, till_id="till-1")
    assert placed.status_code == 201, placed.text
    paid_later = placed.json()
    assert paid_later["shift_id"] == str(shift_id)
    for order, reason in ((cancelled, "order_cancelled"), (paid_later, "payment_timed_out")):
        payment_id = uuid.uuid4()
        failed = PaymentFailed(
            payment_id=payment_id,
            order_id=uuid.UUID(order["id"]),
            store_id=store,
            method="stored_value",
            amount=Money.of(1000, CNY),
            reason=reason,
        )
        await harness.publish_applied(harness.envelope(failed, merchant, payment_id, "payments"))
        await harness.publish_applied(
            refunded(harness, merchant, store, order["id"], payment_id, 1000)
        )
    shown = await harness.order(merchant, cancelled["id"])
    assert shown["status"] == "cancelled"
    assert len(shown["refunds"]) == 1
    assert (shown["paid_total"]["amount"], shown["refunded_total"]["amount"]) == (0, 0)

    # The customer then pays in cash: the order is paid, and stays paid.
    cash = uuid.uuid4()
    await harness.publish_applied(
        await harness.pay(merchant, store, paid_later["id"], 1000, payment_id=cash)
    )
    shown = await harness.order(merchant, paid_later["id"])
    assert shown["status"] == "paid"
    assert [t["payment_id"] for t in shown["tenders"]] == [str(cash)]
    assert len(shown["refunds"]) == 1
    assert shown["refunds"][0]["announced"] is False
    assert (shown["paid_total"]["amount"], shown["refunded_total"]["amount"]) == (1000, 0)
    assert await harness.outboxed("orders.order.paid", merchant) == 1
    assert await harness.outboxed("orders.order.refunded", merchant) == 0
    # The till's shift expects the cash and nothing back for the failed payment.
    report = await harness.client.get(f"/v1/shifts/{shift_id}", headers=harness.auth(merchant))
    assert report.status_code == 200, report.text
    assert {
        m["method"]: (m["tenders"]["amount"], m["refunds"]["amount"], m["expected"]["amount"])
        for m in report.json()["by_method"]
    } == {"cash": (1000, 0, 1000)}
