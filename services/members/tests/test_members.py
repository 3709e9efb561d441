"""Members end to end through HTTP, and points from order events on the bus."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.events.orders import OrderLine, OrderPaid, OrderRefunded, Tender
from contracts.ids import new_id
from contracts.money import Money
from members.points.service import reversed_target

from .conftest import Harness, eventually


def cny(amount: int) -> Money:
    return Money.of(amount, "CNY")


def paid_event(order_id: uuid.UUID, member_id: uuid.UUID | None, total: int) -> OrderPaid:
    now = datetime.now(UTC)
    return OrderPaid(
        order_id=order_id,
        store_id=new_id(),
        channel="pos",
        member_id=member_id,
        lines=[
            OrderLine(
                line_id=new_id(),
                product_id=new_id(),
                name="Tea",
                quantity=1,
                unit_price=cny(total),
                discount=cny(0),
                total=cny(total),
            )
        ],
        subtotal=cny(total),
        discount_total=cny(0),
        total=cny(total),
        tenders=[Tender(payment_id=new_id(), method="cash", amount=cny(total))],
        occurred_at=now,
        paid_at=now,
    )


def refund_event(
    order_id: uuid.UUID, member_id: uuid.UUID, amount: int, refunded_total: int, order_total: int
) -> OrderRefunded:
    return OrderRefunded(
        order_id=order_id,
        store_id=new_id(),
        member_id=member_id,
        refund_id=new_id(),
        payment_id=new_id(),
        amount=cny(amount),
        refunded_total=cny(refunded_total),
        order_total=cny(order_total),
        fully_refunded=refunded_total >= order_total,
    )


async def new_member(harness: Harness, merchant: uuid.UUID) -> dict[str, Any]:
    phone = f"+86138{uuid.uuid4().int % 10**8:08d}"
    response = await harness.create_member(merchant, phone, name="Li Lei")
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


async def ledger(harness: Harness, merchant: uuid.UUID, member_id: str) -> dict[str, Any]:
    response = await harness.client.get(
        f"/v1/members/{member_id}/points", headers=harness.token(merchant)
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_phone_is_unique_per_merchant_only(harness: Harness) -> None:
    merchant, other = new_id(), new_id()
    first = await harness.create_member(merchant, "+86 138-0013-8000", birthday="1990-05-01")
    assert first.status_code == 201, first.text
    assert first.json()["phone"] == "+8613800138000"
    assert first.json()["version"] == 1

    again = await harness.create_member(merchant, "+8613800138000")
    assert again.status_code == 409
    assert again.json()["code"] == "phone_taken"
    elsewhere = await harness.create_member(other, "+8613800138000")
    assert elsewhere.status_code == 201

    # Written without a country code, a mainland number is still the same member's.
    same = await harness.create_member(merchant, "13800138000")
    assert same.status_code == 409
    # Shaped like a phone number, but no phone can have it (no such mobile range).
    bad = await harness.create_member(merchant, "+8612000138000")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["code"] == "invalid_phone"

    async def created_event() -> list[dict[str, Any]]:
        # members.member.updated follows it with the tags, level and birthday.
        return [
            e
            for e in harness.events("members.member", first.json()["id"])
            if e["type"] == "members.member.created"
        ]

    [event] = await eventually(created_event)
    assert event["type"] == "members.member.created"
    assert event["merchant_id"] == str(merchant)


async def test_lookup_list_masking_and_versioned_update(harness: Harness) -> None:
    merchant = new_id()
    member = (await harness.create_member(merchant, "+8613912345678", tags=["vip"])).json()
    cashier = harness.token(merchant, frozenset({"orders:write"}))

    found = await harness.client.get(
        "/v1/members/lookup", params={"phone": "+8613912345678"}, headers=cashier
    )
    assert found.status_code == 200
    assert found.json()["id"] == member["id"]
    missing = await harness.client.get(
        "/v1/members/lookup", params={"phone": "+8613900000000"}, headers=cashier
    )
    assert missing.status_code == 404

    masked = await harness.client.get("/v1/members", headers=cashier)
    assert [m["phone"] for m in masked.json()["items"]] == ["+86139****5678"]
    assert masked.json()["items"][0]["phone_masked"] is True
    full = await harness.client.get("/v1/members", headers=harness.token(merchant))
    assert [m["phone"] for m in full.json()["items"]] == ["+8613912345678"]

    updated = await harness.client.patch(
        f"/v1/members/{member['id']}",
        json={"version": 1, "level": "gold", "tags": ["vip", "tea"]},
        headers=harness.token(merchant),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    assert updated.json()["level"] == "gold"
    assert updated.json()["tags"] == ["vip", "tea"]
    stale = await harness.client.patch(
        f"/v1/members/{member['id']}",
        json={"version": 1, "name": "Han Meimei"},
        headers=harness.token(merchant),
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_mismatch"
    forbidden = await harness.client.patch(
        f"/v1/members/{member['id']}", json={"version": 2, "name": "X"}, headers=cashier
    )
    assert forbidden.status_code == 403


async def test_cashier_registers_members_without_seeing_phones(harness: Harness) -> None:
    merchant = new_id()
    other = (await harness.create_member(merchant, "+8613911112222")).json()
    # The cashier role's default scopes.
    cashier = harness.token(
        merchant, frozenset({"orders:write", "devices:operate", "members:register"})
    )

    registered = await harness.client.post(
        "/v1/members",
        json={"phone": "+86 139-3333-4444", "name": "Han Meimei"},
        headers={**cashier, "Idempotency-Key": "till-1-signup"},
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["phone"] == "+8613933334444"
    assert registered.json()["phone_masked"] is False
    replayed = await harness.client.post(
        "/v1/members",
        json={"phone": "+86 139-3333-4444", "name": "Han Meimei"},
        headers={**cashier, "Idempotency-Key": "till-1-signup"},
    )
    assert replayed.status_code == 201
    assert replayed.json()["id"] == registered.json()["id"]
    taken = await harness.client.post(
        "/v1/members", json={"phone": "+8613911112222"}, headers=cashier
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "phone_taken"
    assert "+8613911112222" not in taken.text

    listed = await harness.client.get("/v1/members", headers=cashier)
    assert {m["phone"] for m in listed.json()["items"]} == {"+86139****2222", "+86139****4444"}
    assert all(m["phone_masked"] for m in listed.json()["items"])
    one = await harness.client.get(f"/v1/members/{other['id']}", headers=cashier)
    assert one.json()["phone"] == "+86139****2222"

    changed = await harness.client.patch(
        f"/v1/members/{registered.json()['id']}",
        json={"version": 1, "name": "X"},
        headers=cashier,
    )
    assert changed.status_code == 403
    assert changed.json()["missing_permission"] == "members:write"
    tagged = await harness.client.post(
        f"/v1/members/{other['id']}/tags", json={"tag": "vip"}, headers=cashier
    )
    assert tagged.status_code == 403

    neither = await harness.client.post(
        "/v1/members",
        json={"phone": "+8613955556666"},
        headers=harness.token(merchant, frozenset({"orders:write"})),
    )
    assert neither.status_code == 403
    assert neither.json()["missing_permission"] == "members:register"


async def test_pagination_of_members(harness: Harness) -> None:
    merchant = new_id()
    for i in range(3):
        await harness.create_member(merchant, f"+8613700000{i:03d}")
    first = await harness.client.get(
        "/v1/members", params={"limit": 2}, headers=harness.token(merchant)
    )
    assert len(first.json()["items"]) == 2
    second = await harness.client.get(
        "/v1/members",
        params={"limit": 2, "cursor": first.json()["next_cursor"]},
        headers=harness.token(merchant),
    )
    assert len(second.json()["items"]) == 1
    assert "next_cursor" not in second.json()


async def test_another_merchants_member_is_not_found(harness: Harness) -> None:
    merchant, intruder = new_id(), new_id()
    member = await new_member(harness, merchant)
    for path in (f"/v1/members/{member['id']}", f"/v1/members/{member['id']}/points"):
        response = await harness.client.get(path, headers=harness.token(intruder))
        assert response.status_code == 404
        assert response.json()["code"] == "member_not_found"
    patched = await harness.client.patch(
        f"/v1/members/{member['id']}",
        json={"version": 1, "name": "X"},
        headers=harness.token(intruder),
    )
    assert patched.status_code == 404


async def test_points_awarded_once_even_if_delivered_twice(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    order_id = new_id()
    envelope = harness.envelope(
        paid_event(order_id, uuid.UUID(member["id"]), 1299), merchant, order_id
    )

    await harness.deliver(envelope)
    await harness.deliver(envelope)
    # The same fact under a new event id (a producer republishing) is refused by the ledger.
    republished = harness.envelope(
        paid_event(order_id, uuid.UUID(member["id"]), 1299), merchant, order_id
    )
    await harness.deliver(republished)
    await harness.processed(republished)

    points = await ledger(harness, merchant, member["id"])
    assert points["balance"] == 12  # 12.99 yuan, rounded down
    assert [(e["kind"], e["points"]) for e in points["items"]] == [("award", 12)]

    async def awarded() -> list[dict[str, Any]]:
        return harness.events("members.points", member["id"])

    [event] = await eventually(awarded)
    assert event["type"] == "members.points.awarded"
    assert event["payload"]["points"] == 12
    assert event["payload"]["balance"] == 12
    assert event["causation_id"] == str(envelope.event_id)


async def test_no_member_or_unknown_member_awards_nothing(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    anonymous = harness.envelope(paid_event(new_id(), None, 5000), merchant, new_id())
    stranger = harness.envelope(paid_event(new_id(), new_id(), 5000), merchant, new_id())
    # A member of this merchant named on another merchant's order earns nothing there.
    other_merchant = new_id()
    foreign = harness.envelope(
        paid_event(new_id(), uuid.UUID(member["id"]), 5000), other_merchant, new_id()
    )
    for envelope in (anonymous, stranger, foreign):
        await harness.deliver(envelope)
    for envelope in (anonymous, stranger, foreign):
        await harness.processed(envelope)
    assert (await ledger(harness, merchant, member["id"]))["balance"] == 0
    assert harness.events("members.points", member["id"]) == []


async def test_partial_refunds_reverse_proportionally_and_full_refund_reverses_all(
    harness: Harness,
) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    member_id = uuid.UUID(member["id"])
    order_id = new_id()
    paid = harness.envelope(paid_event(order_id, member_id, 1000), merchant, order_id)
    await harness.deliver(paid)
    await harness.processed(paid)
    assert (await ledger(harness, merchant, member["id"]))["balance"] == 10

    # 2.50 of 10.00 back: ceil(10 * 250 / 1000) = 3 points reversed.
    first = harness.envelope(refund_event(order_id, member_id, 250, 250, 1000), merchant, order_id)
    await harness.deliver(first)
    await harness.deliver(first)
    await harness.processed(first)
    assert (await ledger(harness, merchant, member["id"]))["balance"] == 7

    # 1.00 more (3.50 in all): ceil(3.5) = 4 in all, so 1 more.
    second = harness.envelope(refund_event(order_id, member_id, 100, 350, 1000), merchant, order_id)
    await harness.deliver(second)
    await harness.processed(second)
    assert (await ledger(harness, merchant, member["id"]))["balance"] == 6

    rest = harness.envelope(refund_event(order_id, member_id, 650, 1000, 1000), merchant, order_id)
    await harness.deliver(rest)
    await harness.processed(rest)
    points = await ledger(harness, merchant, member["id"])
    assert points["balance"] == 0
    assert [(e["kind"], e["points"]) for e in points["items"]] == [
        ("reversal", -6),
        ("reversal", -1),
        ("reversal", -3),
        ("award", 10),
    ]

    async def reversals() -> list[dict[str, Any]] | None:
        events = [
            e for e in harness.events("members.points", member_id) if e["type"].endswith("reversed")
        ]
        return events if len(events) == 3 else None

    events = await eventually(reversals)
    assert sorted(e["payload"]["points"] for e in events) == [1, 3, 6]


async def test_full_refund_at_once_reverses_exactly_the_award(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    member_id = uuid.UUID(member["id"])
    order_id = new_id()
    paid = harness.envelope(paid_event(order_id, member_id, 3399), merchant, order_id)
    refund = harness.envelope(
        refund_event(order_id, member_id, 3399, 3399, 3399), merchant, order_id
    )
    await harness.deliver(paid)
    await harness.deliver(refund)
    await harness.processed(refund)
    points = await ledger(harness, merchant, member["id"])
    assert [(e["kind"], e["points"]) for e in points["items"]] == [("reversal", -33), ("award", 33)]
    assert points["balance"] == 0


async def test_points_rule_is_per_merchant_and_needs_settings_manage(harness: Harness) -> None:
    merchant = new_id()
    cashier = harness.token(merchant, frozenset({"members:write"}))
    refused = await harness.client.put(
        "/v1/points-rule", json={"points_per_unit": 2, "unit_amount": 100}, headers=cashier
    )
    assert refused.status_code == 403
    rule = await harness.client.put(
        "/v1/points-rule",
        json={"points_per_unit": 3, "unit_amount": 1000, "version": 0},
        headers=harness.token(merchant),
    )
    assert rule.status_code == 200, rule.text
    assert rule.json() == {
        "points_per_unit": 3,
        "unit_amount": 1000,
        "version": 1,
        "is_default": False,
    }
    member = await new_member(harness, merchant)
    order_id = new_id()
    paid = harness.envelope(paid_event(order_id, uuid.UUID(member["id"]), 4999), merchant, order_id)
    await harness.deliver(paid)
    await harness.processed(paid)
    # 49.99 yuan at 3 points per 10 yuan: floor(4999 * 3 / 1000) = 14.
    assert (await ledger(harness, merchant, member["id"]))["balance"] == 14
    default = await harness.client.get("/v1/points-rule", headers=harness.token(new_id()))
    assert default.json()["is_default"] is True


def test_reversal_rule() -> None:
    assert reversed_target(10, 250, 1000, False) == 3
    assert reversed_target(10, 1, 1000, False) == 1
    assert reversed_target(10, 0, 1000, False) == 0
    assert reversed_target(33, 3399, 3399, True) == 33
    assert reversed_target(7, 999, 1000, False) == 7
