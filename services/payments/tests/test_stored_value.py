"""Stored value in payments: recharges that are not sales, stored-value payments settled by
members' answers (once, whatever arrives twice or late), refunds back to the account, and the
reconciler leaving members' payments alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from contracts.events.members import (
    StoredValueDebited,
    StoredValueDebitRefused,
    StoredValueRechargeRefused,
    StoredValueRefunded,
)
from contracts.ids import new_id
from contracts.money import Money
from contracts.registry import make_envelope
from payments.payment.reconcile import reconcile_pending
from servicekit.bus.base import OutgoingMessage

from .conftest import Harness, eventually

CASHIER = frozenset({"orders:write", "stored_value:recharge"})


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


async def answer(harness: Harness, payload: BaseModel, merchant: uuid.UUID) -> uuid.UUID:
    """Publish members' answer; its event id."""
    member_id: uuid.UUID = payload.member_id  # type: ignore[attr-defined]
    envelope = make_envelope(
        payload, producer="members", aggregate_id=member_id, merchant_id=merchant
    )
    await harness.bus.broker.append(
        [
            OutgoingMessage(
                topic="members.stored_value",
                key=str(member_id).encode(),
                value=envelope.model_dump_json().encode(),
            )
        ]
    )
    return envelope.event_id


async def applied(harness: Harness, event_id: uuid.UUID) -> None:
    async def seen() -> bool:
        async with harness.app.state.database.transaction() as session:
            found = await session.scalar(
                sa.text("SELECT 1 FROM inbox WHERE event_id = :id"), {"id": event_id}
            )
        return found is not None

    await eventually(seen)


async def types(harness: Harness, payment_id: str) -> list[str]:
    """The events written for a payment, from the outbox (committed with the change; the
    relay publishes them a moment later)."""
    return await _outbox_types(harness, payment_id)


async def recharge(
    harness: Harness,
    merchant: uuid.UUID,
    member: uuid.UUID,
    store: uuid.UUID,
    amount: int,
    *,
    method: str = "cash",
    key: str | None = None,
    scopes: frozenset[str] = CASHIER,
    **extra: Any,
) -> Any:
    return await harness.pay(
        merchant,
        {
            "purpose": "stored_value_recharge",
            "member_id": str(member),
            "store_id": str(store),
            "method": method,
            "amount": cny(amount),
            **extra,
        },
        key=key,
        headers=harness.token(merchant, scopes),
    )


async def test_cash_recharge_is_not_a_sale(harness: Harness) -> None:
    merchant, member, store = new_id(), new_id(), new_id()
    response = await recharge(harness, merchant, member, store, 10000, key="r-1")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["purpose"] == "stored_value_recharge"
    assert body["order_id"] is None
    again = await recharge(harness, merchant, member, store, 10000, key="r-1")
    assert again.json()["id"] == body["id"]

    events = await harness.wait_events(body["id"], 1)
    assert [e["type"] for e in events] == ["payments.payment.recharge_succeeded"]
    assert events[0]["payload"]["member_id"] == str(member)
    assert events[0]["payload"]["amount"] == cny(10000)

    # Listed apart from sales, and never in the day's sales figures.
    listed = await harness.client.get(
        "/v1/payments",
        params={"purpose": "stored_value_recharge", "member_id": str(member)},
        headers=harness.token(merchant),
    )
    assert [p["id"] for p in listed.json()["items"]] == [body["id"]]
    sales = await harness.client.get(
        "/v1/payments", params={"purpose": "order"}, headers=harness.token(merchant)
    )
    assert sales.json()["items"] == []
    today = datetime.now(UTC).date().isoformat()
    figures = await harness.client.get(
        "/v1/payments/figures",
        params={"business_day_from": today, "business_day_to": today},
        headers=harness.token(merchant, frozenset({"reports:read"})),
    )
    assert figures.status_code == 200, figures.text
    assert figures.json()["currencies"] == []
    exported = await harness.client.get(
        "/v1/payments/export",
        params={"purpose": "stored_value_recharge", "member_id": str(member), "lang": "en"},
        headers=harness.token(merchant, frozenset({"reports:read"})),
    )
    assert exported.status_code == 200, exported.text
    assert body["id"] in exported.text

    refund = await harness.client.post(
        f"/v1/payments/{body['id']}/refunds",
        json={"amount": cny(100)},
        headers={**harness.token(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert refund.json()["code"] == "recharge_not_refundable"


async def test_recharge_needs_its_scope_and_fitting_fields(harness: Harness) -> None:
    merchant, member, store = new_id(), new_id(), new_id()
    no_scope = await recharge(
        harness, merchant, member, store, 100, scopes=frozenset({"orders:write"})
    )
    assert no_scope.status_code == 403
    with_order = await recharge(harness, merchant, member, store, 100, order_id=str(new_id()))
    assert with_order.status_code == 422
    assert with_order.json()["errors"][0]["field"] == "order_id"
    by_stored_value = await recharge(harness, merchant, member, store, 100, method="stored_value")
    assert by_stored_value.json()["errors"][0]["code"] == "not_for_recharge"
    elsewhere = await harness.pay(
        merchant,
        {
            "purpose": "stored_value_recharge",
            "member_id": str(member),
            "store_id": str(store),
            "method": "cash",
            "amount": cny(100),
        },
        headers=harness.token(merchant, CASHIER, frozenset({new_id()})),
    )
    assert elsewhere.status_code == 404
    # A sale paid by stored value must name whose.
    order_id, _ = await harness.place_order(merchant, 500)
    nameless = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "stored_value", "amount": cny(500)}
    )
    assert nameless.json()["errors"][0]["field"] == "member_id"


async def test_provider_recharge_and_refused_recharge_given_back(harness: Harness) -> None:
    merchant, member, store = new_id(), new_id(), new_id()
    qr = await recharge(harness, merchant, member, store, 5000, method="wechat_pay")
    assert qr.status_code == 201, qr.text
    paid = await harness.wait_status(merchant, qr.json()["id"], "succeeded")
    events = await harness.wait_events(paid["id"], 1)
    assert [e["type"] for e in events] == ["payments.payment.recharge_succeeded"]

    # Members refuses a cash recharge (not its member): the till hands the money back.
    cash = (await recharge(harness, merchant, member, store, 3000)).json()
    refusal = StoredValueRechargeRefused(
        member_id=member,
        payment_id=uuid.UUID(cash["id"]),
        amount=Money.of(3000, "CNY"),
        reason="member_not_found",
    )
    await applied(harness, await answer(harness, refusal, merchant))
    await applied(harness, await answer(harness, refusal, merchant))  # twice: one refund
    back = await harness.get(merchant, cash["id"])
    assert back["status"] == "refunded"
    listed = await harness.client.get(
        f"/v1/payments/{cash['id']}/refunds", headers=harness.token(merchant)
    )
    assert [(r["status"], r["reason"]) for r in listed.json()] == [
        ("succeeded", "member_not_found")
    ]
    # Not a sale's refund: nothing for orders.
    assert await types(harness, cash["id"]) == ["payments.payment.recharge_succeeded"]


async def pay_by_stored_value(
    harness: Harness, merchant: uuid.UUID, member: uuid.UUID, total: int
) -> tuple[uuid.UUID, uuid.UUID, dict[str, Any]]:
    order_id, store = await harness.place_order(merchant, total)
    response = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "stored_value",
            "member_id": str(member),
            "amount": cny(total),
        },
    )
    assert response.status_code == 201, response.text
    return order_id, store, response.json()


async def test_stored_value_payment_settles_on_members_answer_once(harness: Harness) -> None:
    merchant, member = new_id(), new_id()
    order_id, _, payment = await pay_by_stored_value(harness, merchant, member, 4200)
    assert payment["status"] == "pending"
    assert payment["provider"] == "members"
    assert payment["fee"]["amount"] == 0
    requested = await harness.wait_events(payment["id"], 1)
    assert requested[0]["type"] == "payments.payment.debit_requested"
    assert requested[0]["payload"]["member_id"] == str(member)
    assert requested[0]["payload"]["order_id"] == str(order_id)

    # The order's outstanding amount is held by the pending payment.
    second = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(1)}
    )
    assert second.status_code == 409

    debited = StoredValueDebited(
        member_id=member,
        payment_id=uuid.UUID(payment["id"]),
        amount=Money.of(4200, "CNY"),
        principal=Money.of(4000, "CNY"),
        bonus=Money.of(200, "CNY"),
        balance=Money.of(0, "CNY"),
    )
    await applied(harness, await answer(harness, debited, merchant))
    await applied(harness, await answer(harness, debited, merchant))
    done = await harness.get(merchant, payment["id"])
    assert done["status"] == "succeeded"
    assert await types(harness, payment["id"]) == [
        "payments.payment.debit_requested",
        "payments.payment.succeeded",
    ]
    succeeded = (await harness.wait_events(payment["id"], 2))[1]["payload"]
    assert succeeded["method"] == "stored_value"
    # A late refusal of the same payment changes nothing.
    late = StoredValueDebitRefused(
        member_id=member,
        payment_id=uuid.UUID(payment["id"]),
        amount=Money.of(4200, "CNY"),
        reason="insufficient_balance",
    )
    await applied(harness, await answer(harness, late, merchant))
    assert (await harness.get(merchant, payment["id"]))["status"] == "succeeded"


async def test_refused_stored_value_payment_fails_and_frees_the_order(harness: Harness) -> None:
    merchant, member = new_id(), new_id()
    order_id, _, payment = await pay_by_stored_value(harness, merchant, member, 900)
    refusal = StoredValueDebitRefused(
        member_id=member,
        payment_id=uuid.UUID(payment["id"]),
        amount=Money.of(900, "CNY"),
        reason="insufficient_balance",
    )
    await applied(harness, await answer(harness, refusal, merchant))
    failed = await harness.get(merchant, payment["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "insufficient_balance")
    assert (await types(harness, payment["id"]))[-1] == "payments.payment.failed"
    cash = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(900)}
    )
    assert cash.json()["status"] == "succeeded"


async def test_answers_from_another_merchant_change_nothing(harness: Harness) -> None:
    merchant, intruder, member = new_id(), new_id(), new_id()
    _, _, payment = await pay_by_stored_value(harness, merchant, member, 700)
    forged = StoredValueDebited(
        member_id=member,
        payment_id=uuid.UUID(payment["id"]),
        amount=Money.of(700, "CNY"),
        principal=Money.of(700, "CNY"),
        bonus=Money.of(0, "CNY"),
        balance=Money.of(0, "CNY"),
    )
    await applied(harness, await answer(harness, forged, intruder))
    assert (await harness.get(merchant, payment["id"]))["status"] == "pending"
    foreign = await harness.client.get(
        f"/v1/payments/{payment['id']}", headers=harness.token(intruder)
    )
    assert foreign.status_code == 404


async def test_refund_goes_back_to_the_account_and_completes_on_confirmation(
    harness: Harness,
) -> None:
    merchant, member = new_id(), new_id()
    _, _, payment = await pay_by_stored_value(harness, merchant, member, 3000)
    payment_id = uuid.UUID(payment["id"])
    await applied(
        harness,
        await answer(
            harness,
            StoredValueDebited(
                member_id=member,
                payment_id=payment_id,
                amount=Money.of(3000, "CNY"),
                principal=Money.of(3000, "CNY"),
                bonus=Money.of(0, "CNY"),
                balance=Money.of(0, "CNY"),
            ),
            merchant,
        ),
    )
    key = uuid.uuid4().hex
    headers = {**harness.token(merchant), "Idempotency-Key": key}
    response = await harness.client.post(
        f"/v1/payments/{payment_id}/refunds", json={"amount": cny(1200)}, headers=headers
    )
    assert response.status_code == 201, response.text
    refund = response.json()
    assert refund["status"] == "pending"
    retried = await harness.client.post(
        f"/v1/payments/{payment_id}/refunds", json={"amount": cny(1200)}, headers=headers
    )
    assert retried.json()["id"] == refund["id"]
    events = await harness.wait_events(payment_id, 3)
    credit = [e for e in events if e["type"] == "payments.payment.credit_requested"]
    assert len(credit) == 1
    assert credit[0]["payload"]["refund_id"] == refund["id"]
    assert credit[0]["payload"]["amount"] == cny(1200)

    # The reconciler asks no provider for it and leaves it to members.
    await reconcile_pending(
        harness.app.state.database, harness.app.state.providers, older_than=0, timeout=0
    )
    listed = await harness.client.get(
        f"/v1/payments/{payment_id}/refunds", headers=harness.token(merchant)
    )
    assert listed.json()[0]["status"] == "pending"

    confirmed = StoredValueRefunded(
        member_id=member,
        payment_id=payment_id,
        refund_id=uuid.UUID(refund["id"]),
        amount=Money.of(1200, "CNY"),
        principal=Money.of(1200, "CNY"),
        bonus=Money.of(0, "CNY"),
        balance=Money.of(1200, "CNY"),
    )
    await applied(harness, await answer(harness, confirmed, merchant))
    await applied(harness, await answer(harness, confirmed, merchant))
    listed = await harness.client.get(
        f"/v1/payments/{payment_id}/refunds", headers=harness.token(merchant)
    )
    assert listed.json()[0]["status"] == "succeeded"
    after = await harness.get(merchant, str(payment_id))
    assert (after["status"], after["refunded"]["amount"]) == ("partially_refunded", 1200)
    assert (await types(harness, str(payment_id))).count("payments.payment.refunded") == 1


async def test_debit_after_the_order_was_cancelled_goes_back(harness: Harness) -> None:
    merchant, member = new_id(), new_id()
    order_id, store, payment = await pay_by_stored_value(harness, merchant, member, 800)
    await harness.cancel_order(merchant, order_id, store)
    # Members' queue was slow: the debit was made all the same.
    await applied(
        harness,
        await answer(
            harness,
            StoredValueDebited(
                member_id=member,
                payment_id=uuid.UUID(payment["id"]),
                amount=Money.of(800, "CNY"),
                principal=Money.of(800, "CNY"),
                bonus=Money.of(0, "CNY"),
                balance=Money.of(0, "CNY"),
            ),
            merchant,
        ),
    )
    failed = await harness.get(merchant, payment["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "order_cancelled")
    events = await harness.wait_events(payment["id"], 3)
    credit = [e for e in events if e["type"] == "payments.payment.credit_requested"]
    assert [c["payload"]["amount"] for c in credit] == [cny(800)]


async def test_reconciler_never_fails_a_payment_members_holds(harness: Harness) -> None:
    merchant, member = new_id(), new_id()
    _, _, payment = await pay_by_stored_value(harness, merchant, member, 100)
    # Long past any timeout: still only members can settle it.
    report = await reconcile_pending(
        harness.app.state.database, harness.app.state.providers, older_than=0, timeout=0
    )
    assert report.failed == 0
    assert (await harness.get(merchant, payment["id"]))["status"] == "pending"
    assert await _outbox_types(harness, payment["id"]) == ["payments.payment.debit_requested"]


async def test_points_pay_through_members_like_stored_value(harness: Harness) -> None:
    merchant, member = new_id(), new_id()
    order_id, _ = await harness.place_order(merchant, 1500)
    response = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "points",
            "member_id": str(member),
            "amount": cny(1500),
        },
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    assert (payment["status"], payment["provider"]) == ("pending", "members")
    requested = (await harness.wait_events(payment["id"], 1))[0]
    assert requested["payload"]["tender"] == "points"
    await applied(
        harness,
        await answer(
            harness,
            StoredValueDebited(
                tender="points",
                member_id=member,
                payment_id=uuid.UUID(payment["id"]),
                amount=Money.of(1500, "CNY"),
                principal=Money.of(0, "CNY"),
                bonus=Money.of(0, "CNY"),
                points=1500,
                points_balance=0,
            ),
            merchant,
        ),
    )
    assert (await harness.get(merchant, payment["id"]))["status"] == "succeeded"
    refund = await harness.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": cny(500)},
        headers={**harness.token(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert refund.json()["status"] == "pending"
    events = await harness.wait_events(payment["id"], 3)
    assert events[-1]["type"] == "payments.payment.credit_requested"
    assert events[-1]["payload"]["tender"] == "points"


async def _forget_stored_answer(harness: Harness, key: str) -> None:
    """What a crash between the business commit and the stored answer leaves behind."""
    async with harness.app.state.database.transaction() as session:
        await session.execute(sa.text("DELETE FROM idempotency_keys WHERE key = :k"), {"k": key})


async def _outbox_types(harness: Harness, payment_id: str) -> list[str]:
    async with harness.app.state.database.transaction() as session:
        return list(
            await session.scalars(
                sa.text("SELECT type FROM outbox WHERE aggregateid = :id ORDER BY seq"),
                {"id": payment_id},
            )
        )


async def test_retries_whose_answers_were_lost_ask_members_once(harness: Harness) -> None:
    merchant, member = new_id(), new_id()
    order_id, _ = await harness.place_order(merchant, 2000)
    body = {
        "order_id": str(order_id),
        "method": "stored_value",
        "member_id": str(member),
        "amount": cny(2000),
    }
    first = await harness.pay(merchant, body, key="till-9-0001")
    assert first.status_code == 201, first.text
    await _forget_stored_answer(harness, "till-9-0001")
    retry = await harness.pay(merchant, body, key="till-9-0001")
    assert retry.status_code == 201, retry.text
    payment_id = first.json()["id"]
    assert retry.json()["id"] == payment_id
    assert await _outbox_types(harness, payment_id) == ["payments.payment.debit_requested"]

    await applied(
        harness,
        await answer(
            harness,
            StoredValueDebited(
                member_id=member,
                payment_id=uuid.UUID(payment_id),
                amount=Money.of(2000, "CNY"),
                principal=Money.of(2000, "CNY"),
                bonus=Money.of(0, "CNY"),
                balance=Money.of(0, "CNY"),
            ),
            merchant,
        ),
    )
    url = f"/v1/payments/{payment_id}/refunds"
    headers = {"Idempotency-Key": "refund-9-0001", **harness.token(merchant)}
    refund = await harness.client.post(url, json={"amount": cny(500)}, headers=headers)
    assert refund.status_code == 201, refund.text
    await _forget_stored_answer(harness, "refund-9-0001")
    again = await harness.client.post(url, json={"amount": cny(500)}, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == refund.json()["id"]
    assert (await harness.get(merchant, payment_id))["refunded"] == cny(500)
    assert (await _outbox_types(harness, payment_id)).count(
        "payments.payment.credit_requested"
    ) == 1
