"""Payments end to end through HTTP, the order replica, the sandbox provider and the bus."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from contracts.ids import new_id
from payments.payment.reconcile import reconcile_pending
from payments.providers import signing

from .conftest import Harness, eventually


def cny(amount: int) -> dict[str, object]:
    return {"amount": amount, "currency": "CNY"}


async def test_cash_payment_with_change_emits_succeeded(harness: Harness) -> None:
    merchant = new_id()
    order_id, store_id = await harness.place_order(merchant, 1250)

    response = await harness.pay(
        merchant,
        {"order_id": str(order_id), "method": "cash", "amount": cny(1250), "tendered": cny(2000)},
    )

    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "succeeded"
    assert payment["change"] == cny(750)
    assert payment["fee"] == cny(0)
    assert payment["net"] == cny(1250)
    [event] = await harness.wait_events(payment["id"], 1)
    assert event["type"] == "payments.payment.succeeded"
    assert event["merchant_id"] == str(merchant)
    assert event["payload"]["order_id"] == str(order_id)
    assert event["payload"]["store_id"] == str(store_id)
    assert event["payload"]["amount"] == cny(1250)
    assert event["payload"]["fee"] == cny(0)
    assert event["payload"]["provider"] == "cash"


async def test_unknown_cancelled_and_overpaid_orders_are_refused(harness: Harness) -> None:
    merchant = new_id()
    unknown = await harness.pay(
        merchant, {"order_id": str(new_id()), "method": "cash", "amount": cny(100)}
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "order_not_found"

    order_id, _ = await harness.place_order(merchant, 1000)
    too_much = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "alipay", "amount": cny(1001)}
    )
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "amount_exceeds_outstanding"
    assert too_much.json()["outstanding"] == cny(1000)

    first = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(600)}
    )
    assert first.status_code == 201
    second = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(500)}
    )
    assert second.json()["code"] == "amount_exceeds_outstanding"
    assert second.json()["outstanding"] == cny(400)
    rest = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(400)}
    )
    assert rest.status_code == 201
    paid = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(1)}
    )
    assert paid.status_code == 409
    assert paid.json()["code"] == "order_not_payable"

    cancelled_order, cancelled_store = await harness.place_order(merchant, 500)
    await harness.cancel_order(merchant, cancelled_order, cancelled_store)
    cancelled = await harness.pay(
        merchant, {"order_id": str(cancelled_order), "method": "cash", "amount": cny(500)}
    )
    assert cancelled.status_code == 409
    assert cancelled.json()["code"] == "order_not_payable"


async def test_idempotency_key_replay_reuse_and_absence(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 800)
    body = {"order_id": str(order_id), "method": "cash", "amount": cny(300)}

    first = await harness.pay(merchant, body, key="till-1-0001")
    again = await harness.pay(merchant, body, key="till-1-0001")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"

    other_body = await harness.pay(merchant, {**body, "amount": cny(200)}, key="till-1-0001")
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"

    missing = await harness.client.post("/v1/payments", json=body, headers=harness.token(merchant))
    assert missing.status_code == 400
    assert missing.json()["code"] == "idempotency_key_required"

    listing = await harness.client.get(
        "/v1/payments", params={"order_id": str(order_id)}, headers=harness.token(merchant)
    )
    assert [p["id"] for p in listing.json()["items"]] == [first.json()["id"]]


async def test_qr_payment_pending_then_notified_succeeded_with_fee(harness: Harness) -> None:
    merchant = new_id()
    put = await harness.client.put(
        "/v1/settlement/config", json={"fee_rate_bps": 38}, headers=harness.token(merchant)
    )
    assert put.status_code == 200, put.text
    account = await harness.client.post(
        "/v1/settlement/accounts",
        json={
            "kind": "provider",
            "institution": "sandbox",
            "account_number": "1900012345678",
            "holder_name": "Noodle House Ltd",
        },
        headers={**harness.token(merchant), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert account.status_code == 201, account.text
    assert account.json()["account_number_masked"] == "*********5678"
    order_id, _ = await harness.place_order(merchant, 1250)

    response = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "wechat_pay", "amount": cny(1250)}
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "pending"
    assert created["qr_code"].startswith("sandbox://pay/")
    # 38 bps of 1250 fen is 4.75 fen: half-up gives 5.
    assert created["fee"] == cny(5)
    assert created["net"] == cny(1245)
    assert created["fee_rate_bps"] == 38
    assert created["settlement_account_id"] == account.json()["id"]
    done = await harness.wait_status(merchant, created["id"], "succeeded")
    assert done["provider_reference"] == created["provider_reference"]
    [event] = await harness.wait_events(created["id"], 1)
    assert event["type"] == "payments.payment.succeeded"
    assert event["payload"]["fee"] == cny(5)
    assert event["payload"]["net"] == cny(1245)
    assert event["payload"]["fee_rate_bps"] == 38
    assert event["payload"]["settlement_account_id"] == account.json()["id"]
    assert event["payload"]["provider"] == "sandbox"


async def test_fee_rounds_half_up_and_default_rate_applies(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 10_000)
    # Default 38 bps: 131 fen -> 0.4978 fen -> 0; 132 -> 0.5016 -> 1; 1250 -> 4.75 -> 5.
    fees = []
    for amount in (131, 132, 1250):
        response = await harness.pay(
            merchant,
            {
                "order_id": str(order_id),
                "method": "alipay",
                "amount": cny(amount),
                "sandbox": {"outcome": "timeout"},
            },
        )
        assert response.status_code == 201, response.text
        fees.append((response.json()["fee"]["amount"], response.json()["net"]["amount"]))
    assert fees == [(0, 131), (1, 131), (5, 1245)]


async def test_declined_payment_fails_and_frees_the_amount(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 900)
    response = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "unionpay",
            "amount": cny(900),
            "sandbox": {"outcome": "decline"},
        },
    )
    assert response.status_code == 201
    failed = await harness.wait_status(merchant, response.json()["id"], "failed")
    assert failed["failure_reason"] == "declined"
    assert failed["fee"] == cny(0)  # nothing captured, nothing charged
    assert failed["net"] == cny(0)
    [event] = await harness.wait_events(failed["id"], 1)
    assert event["type"] == "payments.payment.failed"
    assert event["payload"]["reason"] == "declined"
    retry = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(900)}
    )
    assert retry.status_code == 201


async def test_notified_twice_is_applied_once(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 700)
    response = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "alipay",
            "amount": cny(700),
            "sandbox": {"notify_times": 2},
        },
    )
    payment_id = response.json()["id"]
    await harness.sandbox.idle()
    sent = [b for b, _ in harness.sandbox.sent if json.loads(b)["payment_id"] == payment_id]
    assert len(sent) == 2
    await harness.wait_status(merchant, payment_id, "succeeded")
    events = await harness.wait_events(payment_id, 1, settle=0.3)
    assert [e["type"] for e in events] == ["payments.payment.succeeded"]


async def test_forged_unsigned_and_stale_notifications_change_nothing(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 500)
    response = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "wechat_pay",
            "amount": cny(500),
            "sandbox": {"outcome": "silent_success"},
        },
    )
    payment_id = response.json()["id"]
    body, good_headers = harness.sandbox.notification_for(uuid.UUID(payment_id))
    path = "/v1/providers/sandbox/notify"

    unsigned = await harness.client.post(path, content=body)
    assert unsigned.status_code == 401
    assert unsigned.json()["code"] == "notification_unsigned"

    forged_headers = signing.signed_headers("not-the-secret", body)
    forged = await harness.client.post(path, content=body, headers=forged_headers)
    assert forged.status_code == 401
    assert forged.json()["code"] == "invalid_signature"

    tampered = body.replace(b'"succeeded"', b'"failed"')
    changed = await harness.client.post(path, content=tampered, headers=good_headers)
    assert changed.status_code == 401

    secret = harness.app.state.settings.sandbox_secret
    old = signing.signed_headers(secret, body, now=datetime.now(UTC) - timedelta(minutes=6))
    stale = await harness.client.post(path, content=body, headers=old)
    assert stale.status_code == 401
    assert stale.json()["code"] == "stale_notification"

    assert (await harness.get(merchant, payment_id))["status"] == "pending"
    assert harness.payment_events(payment_id) == []

    # The genuine one still works, and its replay is acknowledged without effect.
    ok = await harness.client.post(path, content=body, headers=good_headers)
    assert ok.json() == {"result": "applied"}
    replay = await harness.client.post(path, content=body, headers=good_headers)
    assert replay.status_code == 200
    assert replay.json() == {"result": "duplicate"}
    assert (await harness.get(merchant, payment_id))["status"] == "succeeded"
    assert len(await harness.wait_events(payment_id, 1, settle=0.2)) == 1


async def test_reconciliation_queries_the_provider_then_times_out(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 1000)
    lost = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "card",
            "amount": cny(400),
            "sandbox": {"outcome": "silent_success"},
        },
    )
    silent = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "card",
            "amount": cny(600),
            "sandbox": {"outcome": "timeout"},
        },
    )
    database = harness.app.state.database
    providers = harness.app.state.providers
    soon = datetime.now(UTC) + timedelta(seconds=60)

    await reconcile_pending(database, providers, older_than=30, timeout=300, now=soon)

    assert (await harness.get(merchant, lost.json()["id"]))["status"] == "succeeded"
    assert (await harness.get(merchant, silent.json()["id"]))["status"] == "pending"

    later = datetime.now(UTC) + timedelta(seconds=301)
    await reconcile_pending(database, providers, older_than=30, timeout=300, now=later)

    timed_out = await harness.get(merchant, silent.json()["id"])
    assert timed_out["status"] == "failed"
    assert timed_out["failure_reason"] == "payment_timed_out"
    [event] = await harness.wait_events(silent.json()["id"], 1)
    assert event["type"] == "payments.payment.failed"
    assert event["payload"]["reason"] == "payment_timed_out"
    async with database.transaction() as session:
        pending = await session.scalar(
            sa.text("SELECT count(*) FROM payments WHERE order_id = :o AND status = 'pending'"),
            {"o": order_id},
        )
    assert pending == 0


async def test_partial_then_full_refund_and_over_refund(harness: Harness) -> None:
    merchant = new_id()
    await harness.client.put(
        "/v1/settlement/config", json={"fee_rate_bps": 60}, headers=harness.token(merchant)
    )
    product = str(new_id())
    order_id, _ = await harness.place_order(merchant, 1000, lines=[(uuid.UUID(product), 2)])
    created = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "alipay", "amount": cny(1000)}
    )
    payment_id = created.json()["id"]
    assert created.json()["fee"] == cny(6)
    await harness.wait_status(merchant, payment_id, "succeeded")
    refunds = f"/v1/payments/{payment_id}/refunds"

    def headers(key: str) -> dict[str, str]:
        return {"Idempotency-Key": key, **harness.token(merchant)}

    partial = await harness.client.post(
        refunds,
        json={"amount": cny(250), "returned_lines": [{"product_id": product, "quantity": 1}]},
        headers=headers("r1"),
    )
    assert partial.status_code == 201, partial.text
    # round(6 * 250 / 1000) = round(1.5) = 2
    assert partial.json()["fee_refunded"] == cny(2)
    assert (await harness.get(merchant, payment_id))["status"] == "partially_refunded"

    over = await harness.client.post(refunds, json={"amount": cny(751)}, headers=headers("r2"))
    assert over.status_code == 409
    assert over.json()["code"] == "refund_exceeds_captured"
    assert over.json()["refundable"] == cny(750)

    rest = await harness.client.post(refunds, json={"amount": cny(750)}, headers=headers("r3"))
    assert rest.status_code == 201
    assert rest.json()["fee_refunded"] == cny(4)
    final = await harness.get(merchant, payment_id)
    assert final["status"] == "refunded"
    assert final["refunded"] == cny(1000)
    assert final["fee_refunded"] == cny(6)

    nothing_left = await harness.client.post(
        refunds, json={"amount": cny(1)}, headers=headers("r4")
    )
    assert nothing_left.status_code == 409

    events = await harness.wait_events(payment_id, 3)
    refunded = [e for e in events if e["type"] == "payments.payment.refunded"]
    assert [e["payload"]["amount"] for e in refunded] == [cny(250), cny(750)]
    assert refunded[0]["payload"]["returned_lines"] == [{"product_id": product, "quantity": 1}]
    assert refunded[0]["payload"]["refund_id"] == partial.json()["id"]
    assert refunded[0]["payload"]["fee_refunded"] == cny(2)


async def test_cash_refund_goes_back_as_cash(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 300)
    created = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(300)}
    )
    refund = await harness.client.post(
        f"/v1/payments/{created.json()['id']}/refunds",
        json={"amount": cny(300)},
        headers={"Idempotency-Key": "cash-r", **harness.token(merchant)},
    )
    assert refund.status_code == 201
    assert refund.json()["fee_refunded"] == cny(0)
    assert refund.json()["provider_reference"] is None


async def test_refund_needs_refunds_approve(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 300)
    created = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(300)}
    )
    cashier = harness.token(merchant, frozenset({"orders:write"}))
    refused = await harness.client.post(
        f"/v1/payments/{created.json()['id']}/refunds",
        json={"amount": cny(100)},
        headers={"Idempotency-Key": "no-perm", **cashier},
    )
    assert refused.status_code == 403
    assert refused.json()["missing_permission"] == "refunds:approve"
    assert (await harness.get(merchant, created.json()["id"]))["refunded"] == cny(0)


async def test_another_merchants_payment_and_order_are_invisible(harness: Harness) -> None:
    merchant, intruder = new_id(), new_id()
    order_id, store_id = await harness.place_order(merchant, 300)
    created = await harness.pay(
        merchant, {"order_id": str(order_id), "method": "cash", "amount": cny(300)}
    )
    payment_id = created.json()["id"]

    seen = await harness.client.get(f"/v1/payments/{payment_id}", headers=harness.token(intruder))
    assert seen.status_code == 404
    refund = await harness.client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount": cny(100)},
        headers={"Idempotency-Key": "x", **harness.token(intruder)},
    )
    assert refund.status_code == 404
    listing = await harness.client.get(
        "/v1/payments", params={"order_id": str(order_id)}, headers=harness.token(intruder)
    )
    assert listing.json()["items"] == []
    pay_theirs = await harness.pay(
        intruder, {"order_id": str(order_id), "method": "cash", "amount": cny(1)}
    )
    assert pay_theirs.status_code == 404
    other_store = harness.token(merchant, store_ids=frozenset({new_id()}))
    assert (
        await harness.client.get(f"/v1/payments/{payment_id}", headers=other_store)
    ).status_code == 404
    own_store = harness.token(merchant, store_ids=frozenset({store_id}))
    assert (
        await harness.client.get(f"/v1/payments/{payment_id}", headers=own_store)
    ).status_code == 200


async def test_money_must_be_integer_minor_units(harness: Harness) -> None:
    merchant = new_id()
    order_id, _ = await harness.place_order(merchant, 300)
    response = await harness.pay(
        merchant,
        {
            "order_id": str(order_id),
            "method": "cash",
            "amount": {"amount": 12.5, "currency": "CNY"},
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "expected_integer"


async def test_settlement_endpoints_need_settings_manage(harness: Harness) -> None:
    merchant = new_id()
    cashier = harness.token(merchant, frozenset({"orders:write"}))
    put = await harness.client.put(
        "/v1/settlement/config", json={"fee_rate_bps": 10}, headers=cashier
    )
    assert put.status_code == 403
    config = await harness.client.get("/v1/settlement/config", headers=harness.token(merchant))
    assert config.json() == {"fee_rate_bps": 38, "is_default": True, "version": 0}
    stale = await harness.client.put(
        "/v1/settlement/config",
        json={"fee_rate_bps": 10, "version": 3},
        headers=harness.token(merchant),
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_mismatch"

    async def listed() -> list[object]:
        response = await harness.client.get(
            "/v1/settlement/accounts", headers=harness.token(merchant)
        )
        items: list[object] = response.json()
        return items or [None]

    assert await eventually(listed) == [None]
