"""Stored value: bonus tiers, recharges credited from payments' events, debits decided once
(also under concurrent spends from two tills), refunds back to where each part came from,
other merchants' members refused, and the balance always the sum of the ledger."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from contracts.envelope import EventEnvelope
from contracts.events.payments import (
    RechargeSucceeded,
    StoredValueCreditRequested,
    StoredValueDebitRequested,
)
from contracts.ids import new_id
from contracts.registry import make_envelope
from members.stored_value import service
from members.stored_value.service import refund_split, split_spend

from .conftest import Harness
from .test_members import cny, new_member, paid_event

TOPIC = "members.stored_value"


def payments_envelope(payload: Any, merchant: uuid.UUID, aggregate_id: uuid.UUID) -> EventEnvelope:
    return make_envelope(
        payload, producer="payments", aggregate_id=aggregate_id, merchant_id=merchant
    )


def recharge(merchant: uuid.UUID, member_id: str, amount: int) -> EventEnvelope:
    payment_id = new_id()
    return payments_envelope(
        RechargeSucceeded(
            payment_id=payment_id,
            member_id=uuid.UUID(member_id),
            store_id=new_id(),
            method="cash",
            amount=cny(amount),
            provider="cash",
        ),
        merchant,
        payment_id,
    )


def debit(
    merchant: uuid.UUID, member_id: str, amount: int, payment_id: uuid.UUID | None = None
) -> EventEnvelope:
    payment_id = payment_id or new_id()
    return payments_envelope(
        StoredValueDebitRequested(
            payment_id=payment_id,
            member_id=uuid.UUID(member_id),
            order_id=new_id(),
            store_id=new_id(),
            amount=cny(amount),
        ),
        merchant,
        payment_id,
    )


def credit(
    merchant: uuid.UUID, member_id: str, payment_id: uuid.UUID, amount: int
) -> EventEnvelope:
    return payments_envelope(
        StoredValueCreditRequested(
            refund_id=new_id(),
            payment_id=payment_id,
            member_id=uuid.UUID(member_id),
            order_id=new_id(),
            store_id=new_id(),
            amount=cny(amount),
        ),
        merchant,
        payment_id,
    )


async def account(harness: Harness, merchant: uuid.UUID, member_id: str) -> dict[str, Any]:
    response = await harness.client.get(
        f"/v1/members/{member_id}/stored-value", headers=harness.token(merchant)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def apply(harness: Harness, envelope: EventEnvelope) -> None:
    await harness.deliver(envelope)
    consumer = "members.points" if envelope.type.startswith("orders.") else "members.stored-value"
    await harness.processed(envelope, consumer)


async def written(harness: Harness, member_id: str) -> list[dict[str, Any]]:
    """Members' events about a member, from the outbox the handler's transaction wrote (the
    relay publishes them a moment later)."""
    async with harness.app.state.database.transaction() as session:
        rows = await session.scalars(
            sa.text("SELECT payload FROM outbox WHERE aggregateid = :member ORDER BY seq"),
            {"member": member_id},
        )
        return [dict(row) for row in rows if row["type"].startswith(TOPIC)]


async def answers(harness: Harness, member_id: str, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        e
        for e in await written(harness, member_id)
        if e["payload"].get("payment_id") == str(payment_id)
    ]


async def assert_balanced(harness: Harness, member_id: str) -> None:
    """The account equals the sum of its ledger, and never holds a negative part."""
    async with harness.app.state.database.transaction() as session:
        row = (
            await session.execute(
                sa.text(
                    "SELECT a.principal, a.bonus,"
                    " (SELECT coalesce(sum(principal), 0) FROM stored_value_ledger l"
                    "   WHERE l.member_id = a.member_id),"
                    " (SELECT coalesce(sum(bonus), 0) FROM stored_value_ledger l"
                    "   WHERE l.member_id = a.member_id)"
                    " FROM stored_value_accounts a WHERE a.member_id = :m"
                ),
                {"m": uuid.UUID(member_id)},
            )
        ).one()
    principal, bonus, ledger_principal, ledger_bonus = (int(v) for v in row)
    assert (principal, bonus) == (ledger_principal, ledger_bonus)
    assert principal >= 0
    assert bonus >= 0


async def add_tier(harness: Harness, merchant: uuid.UUID, threshold: int, bonus: int) -> Any:
    response = await harness.client.post(
        "/v1/stored-value/bonus-rules",
        json={"threshold": cny(threshold).model_dump(), "bonus": cny(bonus).model_dump()},
        headers=harness.token(merchant),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_bonus_tiers_preview_and_rule_changes(harness: Harness) -> None:
    merchant, other = new_id(), new_id()
    await add_tier(harness, merchant, 10000, 1000)
    tier_200 = await add_tier(harness, merchant, 20000, 3000)

    async def preview(amount: int, who: uuid.UUID = merchant) -> dict[str, Any]:
        response = await harness.client.get(
            "/v1/stored-value/recharge-preview",
            params={"amount": amount},
            headers=harness.token(who),
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    assert (await preview(9999))["bonus"]["amount"] == 0
    assert (await preview(10000))["bonus"]["amount"] == 1000
    # Only the highest tier reached applies, once.
    assert (await preview(25000))["total"]["amount"] == 28000
    assert (await preview(50000))["bonus"]["amount"] == 3000
    assert (await preview(50000, other))["bonus"]["amount"] == 0

    duplicate = await harness.client.post(
        "/v1/stored-value/bonus-rules",
        json={"threshold": cny(10000).model_dump(), "bonus": cny(5).model_dump()},
        headers=harness.token(merchant),
    )
    assert duplicate.json()["code"] == "bonus_tier_exists"
    mixed = await harness.client.post(
        "/v1/stored-value/bonus-rules",
        json={"threshold": cny(300).model_dump(), "bonus": {"amount": 5, "currency": "USD"}},
        headers=harness.token(merchant),
    )
    assert mixed.status_code == 422
    cashier = await harness.client.post(
        "/v1/stored-value/bonus-rules",
        json={"threshold": cny(300).model_dump(), "bonus": cny(5).model_dump()},
        headers=harness.token(merchant, frozenset({"orders:write", "stored_value:recharge"})),
    )
    assert cashier.status_code == 403

    url = f"/v1/stored-value/bonus-rules/{tier_200['id']}"
    changed = await harness.client.put(
        url,
        json={"threshold": cny(20000).model_dump(), "bonus": cny(4000).model_dump(), "version": 1},
        headers=harness.token(merchant),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    stale = await harness.client.put(
        url,
        json={"threshold": cny(20000).model_dump(), "bonus": cny(1).model_dump(), "version": 1},
        headers=harness.token(merchant),
    )
    assert stale.json()["code"] == "version_mismatch"
    clash = await harness.client.put(
        url,
        json={"threshold": cny(10000).model_dump(), "bonus": cny(1).model_dump(), "version": 2},
        headers=harness.token(merchant),
    )
    assert clash.json()["code"] == "bonus_tier_exists"
    assert (await preview(25000))["bonus"]["amount"] == 4000
    foreign = await harness.client.get(url, headers=harness.token(other))
    assert foreign.status_code == 404
    foreign_delete = await harness.client.delete(url, headers=harness.token(other))
    assert foreign_delete.status_code == 404
    deleted = await harness.client.delete(url, headers=harness.token(merchant))
    assert deleted.status_code == 204
    listed = await harness.client.get(
        "/v1/stored-value/bonus-rules", headers=harness.token(merchant)
    )
    assert [r["threshold"]["amount"] for r in listed.json()] == [10000]


async def test_recharge_credits_principal_and_bonus_once(harness: Harness) -> None:
    merchant = new_id()
    await add_tier(harness, merchant, 10000, 1000)
    await add_tier(harness, merchant, 20000, 3000)
    member = await new_member(harness, merchant)
    first = recharge(merchant, member["id"], 25000)
    await apply(harness, first)
    await apply(harness, first)  # delivered twice
    # Republished under a new event id: still one recharge per payment.
    again = first.model_copy(update={"event_id": new_id()})
    await apply(harness, again)
    small = recharge(merchant, member["id"], 5000)
    await apply(harness, small)

    body = await account(harness, merchant, member["id"])
    assert body["account"]["principal"]["amount"] == 30000
    assert body["account"]["bonus"]["amount"] == 3000
    assert body["account"]["balance"]["amount"] == 33000
    assert [e["kind"] for e in body["items"]] == ["recharge", "bonus", "recharge"]
    recharged = [
        e for e in await written(harness, member["id"]) if e["type"].endswith(".recharged")
    ]
    assert len(recharged) == 2
    assert recharged[0]["payload"]["bonus"]["amount"] == 3000
    history = await harness.client.get(
        f"/v1/members/{member['id']}/stored-value/recharges", headers=harness.token(merchant)
    )
    assert [(r["amount"]["amount"], r["bonus"]["amount"]) for r in history.json()["items"]] == [
        (5000, 0),
        (25000, 3000),
    ]
    await assert_balanced(harness, member["id"])


async def test_recharge_for_another_merchants_member_is_refused(harness: Harness) -> None:
    owner, intruder = new_id(), new_id()
    member = await new_member(harness, owner)
    envelope = recharge(intruder, member["id"], 10000)
    await apply(harness, envelope)
    refused = await answers(harness, member["id"], envelope.aggregate_id)
    assert [e["type"] for e in refused] == ["members.stored_value.recharge_refused"]
    assert refused[0]["payload"]["reason"] == "member_not_found"
    assert (await account(harness, owner, member["id"]))["account"] is None


async def test_spend_principal_first_refuse_when_short_and_decide_once(
    harness: Harness,
) -> None:
    merchant = new_id()
    await add_tier(harness, merchant, 10000, 2000)
    member = await new_member(harness, merchant)
    await apply(harness, recharge(merchant, member["id"], 10000))

    spend = debit(merchant, member["id"], 11000)
    await apply(harness, spend)
    await apply(harness, spend.model_copy(update={"event_id": new_id()}))
    debited = await answers(harness, member["id"], spend.aggregate_id)
    assert [e["type"] for e in debited] == ["members.stored_value.debited"]
    assert debited[0]["payload"]["principal"]["amount"] == 10000
    assert debited[0]["payload"]["bonus"]["amount"] == 1000
    assert debited[0]["payload"]["balance"]["amount"] == 1000

    short = debit(merchant, member["id"], 1001)
    await apply(harness, short)
    refused = await answers(harness, member["id"], short.aggregate_id)
    assert [e["payload"].get("reason") for e in refused] == ["insufficient_balance"]
    # The refusal stands even if money arrives before the request is delivered again.
    await apply(harness, recharge(merchant, member["id"], 5000))
    await apply(harness, short.model_copy(update={"event_id": new_id()}))
    assert len(await answers(harness, member["id"], short.aggregate_id)) == 1

    body = await account(harness, merchant, member["id"])
    assert body["account"]["principal"]["amount"] == 5000
    assert body["account"]["bonus"]["amount"] == 1000
    await assert_balanced(harness, member["id"])


async def test_refunds_return_each_part_where_it_came_from(harness: Harness) -> None:
    merchant = new_id()
    await add_tier(harness, merchant, 6000, 3000)
    member = await new_member(harness, merchant)
    await apply(harness, recharge(merchant, member["id"], 6000))
    # 9000 in the account (6000 + 3000); a spend of 8000 takes all 6000 principal and 2000 bonus.
    spend = debit(merchant, member["id"], 8000)
    await apply(harness, spend)
    payment_id = spend.aggregate_id

    first = credit(merchant, member["id"], payment_id, 3001)
    await apply(harness, first)
    await apply(harness, first.model_copy(update={"event_id": new_id()}))  # once per refund
    second = credit(merchant, member["id"], payment_id, 4999)
    await apply(harness, second)
    refunds = [
        e
        for e in await answers(harness, member["id"], payment_id)
        if e["type"] == "members.stored_value.refunded"
    ]
    assert len(refunds) == 2
    # floor(2000 * 3001 / 8000) = 750 bonus back first, then the rest: exactly 6000 and 2000.
    assert refunds[0]["payload"]["bonus"]["amount"] == 750
    assert refunds[0]["payload"]["principal"]["amount"] == 2251
    total_principal = sum(e["payload"]["principal"]["amount"] for e in refunds)
    total_bonus = sum(e["payload"]["bonus"]["amount"] for e in refunds)
    assert (total_principal, total_bonus) == (6000, 2000)
    body = await account(harness, merchant, member["id"])
    assert body["account"]["principal"]["amount"] == 6000
    assert body["account"]["bonus"]["amount"] == 3000
    refund_entries = await harness.client.get(
        f"/v1/members/{member['id']}/stored-value",
        params={"kind": "refund"},
        headers=harness.token(merchant),
    )
    assert len(refund_entries.json()["items"]) == 2
    await assert_balanced(harness, member["id"])

    # A refund of a payment members never debited gives nothing and answers nothing.
    stray = credit(merchant, member["id"], new_id(), 100)
    await apply(harness, stray)
    assert await answers(harness, member["id"], stray.aggregate_id) == []


async def test_debit_for_another_merchants_member_is_refused(harness: Harness) -> None:
    owner, intruder = new_id(), new_id()
    member = await new_member(harness, owner)
    await apply(harness, recharge(owner, member["id"], 10000))
    envelope = debit(intruder, member["id"], 100)
    await apply(harness, envelope)
    refused = await answers(harness, member["id"], envelope.aggregate_id)
    assert [e["payload"]["reason"] for e in refused] == ["member_not_found"]
    assert (await account(harness, owner, member["id"]))["account"]["balance"]["amount"] == 10000
    for path in ("stored-value", "stored-value/recharges"):
        response = await harness.client.get(
            f"/v1/members/{member['id']}/{path}", headers=harness.token(intruder)
        )
        assert response.status_code == 404


@pytest.mark.parametrize("tills", [2, 4])
async def test_concurrent_spends_never_go_below_zero(harness: Harness, tills: int) -> None:
    """Tills spend one account at the same moment, each in its own transaction: the balance
    covers one spend, so exactly one is debited and the others refused."""
    merchant = new_id()
    member = await new_member(harness, merchant)
    await apply(harness, recharge(merchant, member["id"], 1000))
    database = harness.app.state.database

    async def till() -> str:
        envelope = debit(merchant, member["id"], 700)
        async with database.transaction() as session:
            return await service.debit_for_payment(session, envelope)

    outcomes = sorted(await asyncio.gather(*(till() for _ in range(tills))))
    assert outcomes == ["debited"] + ["refused"] * (tills - 1)
    body = await account(harness, merchant, member["id"])
    assert body["account"]["balance"]["amount"] == 300
    await assert_balanced(harness, member["id"])


def test_split_rules() -> None:
    assert split_spend(100, 50, 120) == (100, 20)
    assert split_spend(0, 50, 50) == (0, 50)
    assert split_spend(100, 50, 151) is None
    assert split_spend(100, 50, 0) is None

    class Debit:
        amount, principal, bonus = 8000, 6000, 2000
        refunded_principal = refunded_bonus = 0

    taken = Debit()
    back = [0, 0]
    for amount in (1, 2999, 3, 4997, 500):  # the last one is more than is left: capped
        principal, bonus = refund_split(taken, amount)  # type: ignore[arg-type]
        assert principal >= 0
        assert bonus >= 0
        taken.refunded_principal += principal
        taken.refunded_bonus += bonus
        back[0] += principal
        back[1] += bonus
    assert back == [6000, 2000]


def points_debit(
    merchant: uuid.UUID, member_id: str, amount: int, payment_id: uuid.UUID | None = None
) -> EventEnvelope:
    envelope = debit(merchant, member_id, amount, payment_id)
    envelope.payload["tender"] = "points"
    return envelope


def points_credit(
    merchant: uuid.UUID, member_id: str, payment_id: uuid.UUID, amount: int
) -> EventEnvelope:
    envelope = credit(merchant, member_id, payment_id, amount)
    envelope.payload["tender"] = "points"
    return envelope


async def earn_points(harness: Harness, merchant: uuid.UUID, member_id: str, total: int) -> None:
    envelope = harness.envelope(
        paid_event(new_id(), uuid.UUID(member_id), total), merchant, new_id()
    )
    await apply(harness, envelope)


async def points_balance(harness: Harness, merchant: uuid.UUID, member_id: str) -> int:
    response = await harness.client.get(
        f"/v1/members/{member_id}/points", headers=harness.token(merchant)
    )
    balance: int = response.json()["balance"]
    return balance


async def test_points_pay_at_the_merchants_rate_and_come_back_on_refund(
    harness: Harness,
) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    await earn_points(harness, merchant, member["id"], 5000)  # 50 points (1 per yuan)
    assert await points_balance(harness, merchant, member["id"]) == 50

    before_rate = points_debit(merchant, member["id"], 100)
    await apply(harness, before_rate)
    assert [
        e["payload"]["reason"]
        for e in await answers(harness, member["id"], before_rate.aggregate_id)
    ] == ["points_not_accepted"]

    rate = await harness.client.put(
        "/v1/stored-value/points-rate",
        json={"points_per_unit": 10, "version": 0},
        headers=harness.token(merchant),
    )
    assert rate.status_code == 200, rate.text
    assert rate.json() == {"accepted": True, "points_per_unit": 10, "version": 1}
    stale = await harness.client.put(
        "/v1/stored-value/points-rate",
        json={"points_per_unit": 5, "version": 0},
        headers=harness.token(merchant),
    )
    assert stale.json()["code"] == "version_mismatch"
    elsewhere = await harness.client.get(
        "/v1/stored-value/points-rate", headers=harness.token(new_id())
    )
    assert elsewhere.json()["accepted"] is False

    # 3.01 yuan at 10 points a yuan: 30.1 points, rounded up to 31.
    spend = points_debit(merchant, member["id"], 301)
    await apply(harness, spend)
    await apply(harness, spend.model_copy(update={"event_id": new_id()}))
    debited = await answers(harness, member["id"], spend.aggregate_id)
    assert len(debited) == 1
    assert debited[0]["payload"]["tender"] == "points"
    assert (debited[0]["payload"]["points"], debited[0]["payload"]["points_balance"]) == (31, 19)
    short = points_debit(merchant, member["id"], 200)  # 20 points, 19 left
    await apply(harness, short)
    assert [
        e["payload"]["reason"] for e in await answers(harness, member["id"], short.aggregate_id)
    ] == ["insufficient_points"]

    first = points_credit(merchant, member["id"], spend.aggregate_id, 150)
    await apply(harness, first)
    await apply(harness, first.model_copy(update={"event_id": new_id()}))
    await apply(harness, points_credit(merchant, member["id"], spend.aggregate_id, 151))
    back = [
        e["payload"]["points"]
        for e in await answers(harness, member["id"], spend.aggregate_id)
        if e["type"] == "members.stored_value.refunded"
    ]
    assert back == [15, 16]  # floor(31 * 150 / 301), then the rest
    assert await points_balance(harness, merchant, member["id"]) == 50
    ledger = await harness.client.get(
        f"/v1/members/{member['id']}/points", headers=harness.token(merchant)
    )
    kinds = [(e["kind"], e["points"]) for e in ledger.json()["items"]]
    assert kinds == [
        ("redemption_refund", 16),
        ("redemption_refund", 15),
        ("redemption", -31),
        ("award", 50),
    ]


async def test_concurrent_points_spends_never_go_below_zero(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    await earn_points(harness, merchant, member["id"], 4000)  # 40 points
    await harness.client.put(
        "/v1/stored-value/points-rate",
        json={"points_per_unit": 100},
        headers=harness.token(merchant),
    )
    database = harness.app.state.database

    async def till() -> str:
        envelope = points_debit(merchant, member["id"], 31)  # 31 points each
        async with database.transaction() as session:
            return await service.debit_for_payment(session, envelope)

    outcomes = sorted(await asyncio.gather(till(), till(), till()))
    assert outcomes == ["debited", "refused", "refused"]
    assert await points_balance(harness, merchant, member["id"]) == 9


class _Crash(Exception):
    """The process dies after the handler's work, before its transaction commits."""


async def test_a_crash_before_commit_leaves_nothing_and_the_redelivery_debits_once(
    harness: Harness,
) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    await apply(harness, recharge(merchant, member["id"], 1000))
    spend = debit(merchant, member["id"], 600)
    database = harness.app.state.database
    outcomes: list[str] = []

    async def crashing() -> None:
        async with database.transaction() as session:
            outcomes.append(await service.debit_for_payment(session, spend))
            raise _Crash

    with pytest.raises(_Crash):
        await crashing()
    assert outcomes == ["debited"]
    assert (await account(harness, merchant, member["id"]))["account"]["balance"]["amount"] == 1000
    assert await answers(harness, member["id"], spend.aggregate_id) == []

    await apply(harness, spend)  # the broker delivers it again
    await apply(harness, spend)
    body = await account(harness, merchant, member["id"])
    assert body["account"]["balance"]["amount"] == 400
    assert len(await answers(harness, member["id"], spend.aggregate_id)) == 1
    await assert_balanced(harness, member["id"])


async def test_adjustments_correct_each_part_never_below_zero(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    url = f"/v1/members/{member['id']}/stored-value/adjustments"

    async def adjust(principal: int, bonus: int, **headers: str) -> Any:
        return await harness.client.post(
            url,
            json={
                "principal": cny(principal).model_dump(),
                "bonus": cny(bonus).model_dump(),
                "note": "import fix",
            },
            headers={"Idempotency-Key": uuid.uuid4().hex, **harness.token(merchant), **headers},
        )

    credited = await adjust(5000, 500)
    assert credited.status_code == 201, credited.text
    assert credited.json()["kind"] == "adjustment"
    assert credited.json()["note"] == "import fix"
    too_much = await adjust(0, -501)
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "insufficient_balance"
    nothing = await adjust(0, 0)
    assert nothing.status_code == 422
    taken = await adjust(-1000, -500)
    assert taken.status_code == 201, taken.text
    cashier = await harness.client.post(
        url,
        json={"principal": cny(100).model_dump(), "bonus": cny(0).model_dump(), "note": "x"},
        headers={
            "Idempotency-Key": uuid.uuid4().hex,
            **harness.token(merchant, frozenset({"orders:write", "members:write"})),
        },
    )
    assert cashier.status_code == 403
    body = await account(harness, merchant, member["id"])
    assert (body["account"]["principal"]["amount"], body["account"]["bonus"]["amount"]) == (4000, 0)
    adjusted = [e for e in await written(harness, member["id"]) if e["type"].endswith(".adjusted")]
    assert len(adjusted) == 2
    await assert_balanced(harness, member["id"])
