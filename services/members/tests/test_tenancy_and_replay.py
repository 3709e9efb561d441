"""Members across tenants (another merchant's ids over every id-taking route with the three
roles, phone masking) and points under replays: refunds before the payment, duplicates and
any order of events end in the same balance, never below zero, never twice."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from contracts.envelope import EventEnvelope
from contracts.ids import new_id
from members.points.handlers import order_paid, order_refunded
from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import Harness, eventually
from .test_members import ledger, new_member, paid_event, refund_event

HQ_SCOPES = frozenset(
    {"members:write", "settings:manage", "reports:read", "members:import", "coupons:manage"}
)
STORE_MANAGER_SCOPES = frozenset(
    {"orders:write", "members:write", "reports:read", "coupons:manage"}
)
CASHIER_SCOPES = frozenset({"orders:write"})
ROLES = [Role.HQ_ADMIN, Role.STORE_MANAGER, Role.CASHIER]
ROLE_SCOPES = {
    Role.HQ_ADMIN: HQ_SCOPES,
    Role.STORE_MANAGER: STORE_MANAGER_SCOPES,
    Role.CASHIER: CASHIER_SCOPES,
}


def as_role(harness: Harness, role: Role, merchant: uuid.UUID) -> dict[str, str]:
    if role is Role.HQ_ADMIN:
        scopes, stores = HQ_SCOPES, None
    elif role is Role.STORE_MANAGER:
        scopes, stores = STORE_MANAGER_SCOPES, frozenset({uuid.uuid4()})
    else:
        scopes, stores = CASHIER_SCOPES, frozenset({uuid.uuid4()})
    headers = bearer_headers(harness.key, merchant, scopes=scopes, store_ids=stores, role=role)
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


@pytest.mark.parametrize("role", ROLES)
async def test_another_merchants_member_is_not_found_on_every_route(
    harness: Harness, role: Role
) -> None:
    owner, intruder = new_id(), new_id()
    member = await new_member(harness, owner)
    member_id = member["id"]
    import_id = (
        await harness.client.post(
            "/v1/members/imports",
            content=f"phone\n{member['phone']}\n".encode(),
            headers={**as_role(harness, Role.HQ_ADMIN, owner), "Content-Type": "text/csv"},
        )
    ).json()["id"]
    period = "business_day_from=2026-01-01&business_day_to=2026-01-31"
    owner_headers = harness.token(owner)
    template = await harness.client.post(
        "/v1/coupon-templates",
        json={
            "name": "5 off",
            "kind": "no_threshold",
            "amount_off": {"amount": 500, "currency": "CNY"},
            "valid_days": 30,
        },
        headers=owner_headers,
    )
    assert template.status_code == 201, template.text
    template_id = template.json()["id"]
    coupon = await harness.client.post(
        f"/v1/coupon-templates/{template_id}/issue",
        json={"member_id": member_id},
        headers=owner_headers,
    )
    assert coupon.status_code == 201, coupon.text
    coupon_id = coupon.json()["id"]
    level = await harness.client.post(
        "/v1/member-levels",
        json={"name": "gold", "rank": 1, "basis": "spend", "threshold": 10**9},
        headers=owner_headers,
    )
    assert level.status_code == 201, level.text
    rule = await harness.client.post(
        "/v1/member-tag-rules",
        json={"tag": "loyal", "min_visit_count": 10**6},
        headers=owner_headers,
    )
    assert rule.status_code == 201, rule.text
    the_coupon = f"/v1/members/{member_id}/coupons/{coupon_id}"
    tier = {"amount": 10000, "currency": "CNY"}
    created_rule = await harness.client.post(
        "/v1/stored-value/bonus-rules",
        json={"threshold": tier, "bonus": tier},
        headers=owner_headers,
    )
    assert created_rule.status_code == 201, created_rule.text
    rule_url = f"/v1/stored-value/bonus-rules/{created_rule.json()['id']}"
    # Each route with the scope it needs beyond a valid token (None: any staff member).
    requests: dict[tuple[str, str], tuple[str, dict[str, Any] | None, str | None]] = {
        ("get", "/v1/members/{member_id}"): (f"/v1/members/{member_id}", None, None),
        ("patch", "/v1/members/{member_id}"): (
            f"/v1/members/{member_id}",
            {"version": 1, "name": "taken over"},
            "members:write",
        ),
        ("get", "/v1/members/{member_id}/points"): (
            f"/v1/members/{member_id}/points",
            None,
            None,
        ),
        ("get", "/v1/members/{member_id}/analysis"): (
            f"/v1/members/{member_id}/analysis?{period}",
            None,
            "reports:read",
        ),
        ("get", "/v1/members/imports/{import_id}"): (
            f"/v1/members/imports/{import_id}",
            None,
            "members:import",
        ),
        ("get", "/v1/members/imports/{import_id}/rows"): (
            f"/v1/members/imports/{import_id}/rows",
            None,
            "members:import",
        ),
        ("get", "/v1/members/{member_id}/coupons"): (
            f"/v1/members/{member_id}/coupons",
            None,
            None,
        ),
        ("get", "/v1/members/{member_id}/coupons/{coupon_id}"): (the_coupon, None, None),
        ("post", "/v1/members/{member_id}/coupons/{coupon_id}/void"): (
            f"{the_coupon}/void",
            {"reason": "taken over"},
            "coupons:manage",
        ),
        ("post", "/v1/members/{member_id}/tags"): (
            f"/v1/members/{member_id}/tags",
            {"tag": "intruder"},
            "members:write",
        ),
        ("delete", "/v1/members/{member_id}/tags/{tag}"): (
            f"/v1/members/{member_id}/tags/vip",
            None,
            "members:write",
        ),
        ("get", "/v1/coupon-templates/{template_id}"): (
            f"/v1/coupon-templates/{template_id}",
            None,
            None,
        ),
        ("patch", "/v1/coupon-templates/{template_id}"): (
            f"/v1/coupon-templates/{template_id}",
            {"version": 1, "active": False},
            "coupons:manage",
        ),
        ("post", "/v1/coupon-templates/{template_id}/issue"): (
            f"/v1/coupon-templates/{template_id}/issue",
            {"member_id": member_id},
            "coupons:manage",
        ),
        ("post", "/v1/coupon-templates/{template_id}/issue-to-tag"): (
            f"/v1/coupon-templates/{template_id}/issue-to-tag",
            {"tag": "vip", "batch_key": "intruder"},
            "coupons:manage",
        ),
        ("patch", "/v1/member-levels/{level_id}"): (
            f"/v1/member-levels/{level.json()['id']}",
            {"version": 1, "threshold": 0},
            "settings:manage",
        ),
        ("put", "/v1/member-tag-rules/{rule_id}"): (
            f"/v1/member-tag-rules/{rule.json()['id']}",
            {"version": 1, "min_visit_count": 0},
            "settings:manage",
        ),
        ("get", "/v1/members/{member_id}/stored-value"): (
            f"/v1/members/{member_id}/stored-value",
            None,
            None,
        ),
        ("get", "/v1/members/{member_id}/stored-value/recharges"): (
            f"/v1/members/{member_id}/stored-value/recharges",
            None,
            None,
        ),
        ("post", "/v1/members/{member_id}/stored-value/adjustments"): (
            f"/v1/members/{member_id}/stored-value/adjustments",
            {"principal": tier, "bonus": {"amount": 0, "currency": "CNY"}, "note": "gift"},
            "settings:manage",
        ),
        ("get", "/v1/stored-value/bonus-rules/{rule_id}"): (rule_url, None, None),
        ("put", "/v1/stored-value/bonus-rules/{rule_id}"): (
            rule_url,
            {"threshold": tier, "bonus": tier, "version": 1},
            "settings:manage",
        ),
        ("delete", "/v1/stored-value/bonus-rules/{rule_id}"): (rule_url, None, "settings:manage"),
    }
    spec = (await harness.client.get("/openapi.json")).json()
    routes = {
        (method, path)
        for path, operations in spec["paths"].items()
        if "{" in path
        for method in operations
    }
    assert routes == set(requests), "a route taking an id is missing from this walk"

    for method, (url, body, scope) in requests.items():
        headers = as_role(harness, role, intruder)
        response = await harness.client.request(method[0], url, json=body, headers=headers)
        allowed = scope is None or scope in ROLE_SCOPES[role]
        assert response.status_code == (404 if allowed else 403), (url, response.text)
        assert member["phone"] not in response.text
    # Nothing of the owner's changed.
    again = await harness.client.get(the_coupon, headers=owner_headers)
    assert again.json()["state"] == "issued"
    assert (await harness.client.get(f"/v1/members/{member_id}", headers=owner_headers)).json()[
        "tags"
    ] == []
    # The intruder's lists and lookups show nothing of the owner's.
    listed = await harness.client.get("/v1/members", headers=as_role(harness, role, intruder))
    assert listed.json()["items"] == []
    looked_up = await harness.client.get(
        "/v1/members/lookup",
        params={"phone": member["phone"]},
        headers=as_role(harness, role, intruder),
    )
    assert looked_up.status_code == 404
    mine = await harness.client.get(f"/v1/members/{member_id}", headers=harness.token(owner))
    assert mine.json()["name"] == member["name"]
    assert mine.json()["version"] == 1


async def test_phone_is_masked_for_callers_without_members_write(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    phone = member["phone"]
    for role, masked in ((Role.CASHIER, True), (Role.STORE_MANAGER, False), (Role.HQ_ADMIN, False)):
        headers = as_role(harness, role, merchant)
        one = (await harness.client.get(f"/v1/members/{member['id']}", headers=headers)).json()
        [listed] = (await harness.client.get("/v1/members", headers=headers)).json()["items"]
        for body in (one, listed):
            assert body["phone_masked"] is masked
            assert (body["phone"] == phone) is not masked
            if masked:
                assert body["phone"].endswith(phone[-4:])
                assert "****" in body["phone"]


async def apply(harness: Harness, envelope: EventEnvelope) -> None:
    handler = order_paid if envelope.type == "orders.order.paid" else order_refunded
    async with harness.app.state.database.transaction() as session:
        await handler(session, envelope)


async def balances_never_negative(harness: Harness, member_id: str) -> None:
    async with harness.app.state.database.transaction() as session:
        lowest = await session.scalar(
            sa.text("SELECT min(balance_after) FROM points_ledger WHERE member_id = :m"),
            {"m": uuid.UUID(member_id)},
        )
    assert lowest is None or lowest >= 0


async def test_every_order_of_payment_and_refunds_ends_in_the_same_points(
    harness: Harness,
) -> None:
    """10 points for 10.00; refunds of 2.50 and then 1.00 (3.50 in all) take back 4."""
    for permutation in itertools.permutations(["paid", "first", "second"]):
        merchant = new_id()
        member = await new_member(harness, merchant)
        member_id = uuid.UUID(member["id"])
        order_id = new_id()
        events = {
            "paid": paid_event(order_id, member_id, 1000),
            "first": refund_event(order_id, member_id, 250, 250, 1000),
            "second": refund_event(order_id, member_id, 100, 350, 1000),
        }
        for name in permutation:
            await apply(harness, harness.envelope(events[name], merchant, order_id))
        # The whole window again, under new event ids, in reverse.
        for name in reversed(permutation):
            await apply(harness, harness.envelope(events[name], merchant, order_id))
        points = await ledger(harness, merchant, member["id"])
        assert points["balance"] == 6, permutation
        assert sum(e["points"] for e in points["items"]) == 6
        await balances_never_negative(harness, member["id"])


async def test_refund_before_its_payment_through_the_bus(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    member_id = uuid.UUID(member["id"])
    order_id = new_id()
    refund = harness.envelope(
        refund_event(order_id, member_id, 3399, 3399, 3399), merchant, order_id
    )
    paid = harness.envelope(paid_event(order_id, member_id, 3399), merchant, order_id)
    await harness.deliver(refund)
    await harness.processed(refund)
    assert (await ledger(harness, merchant, member["id"]))["items"] == []
    await harness.deliver(paid)
    await harness.deliver(refund)  # redelivered after the payment: changes nothing
    again = harness.envelope(
        refund_event(order_id, member_id, 3399, 3399, 3399), merchant, order_id
    )
    await harness.deliver(again)
    await harness.processed(again)
    points = await ledger(harness, merchant, member["id"])
    assert [(e["kind"], e["points"]) for e in points["items"]] == [("reversal", -33), ("award", 33)]
    assert points["balance"] == 0
    await balances_never_negative(harness, member["id"])

    async def reversed_events() -> list[dict[str, Any]]:
        # The relay publishes after the commit: wait for it rather than read too early.
        return [
            e for e in harness.events("members.points", member_id) if e["type"].endswith("reversed")
        ]

    assert [e["payload"]["points"] for e in await eventually(reversed_events)] == [33]


async def test_another_merchants_refund_takes_no_points(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    member_id = uuid.UUID(member["id"])
    order_id = new_id()
    await apply(
        harness, harness.envelope(paid_event(order_id, member_id, 1000), merchant, order_id)
    )
    foreign = harness.envelope(
        refund_event(order_id, member_id, 1000, 1000, 1000), new_id(), order_id
    )
    await apply(harness, foreign)
    assert (await ledger(harness, merchant, member["id"]))["balance"] == 10
    async with harness.app.state.database.transaction() as session:
        kept = await session.scalar(
            sa.text("SELECT count(*) FROM points_refunds WHERE member_id = :m"), {"m": member_id}
        )
    assert kept == 0


async def test_a_nul_character_is_a_client_mistake_not_a_server_error(harness: Harness) -> None:
    merchant = new_id()
    for fields in ({"name": "Li\x00"}, {"tags": ["vip\x00"]}, {"level": "\x00"}):
        response = await harness.create_member(
            merchant, f"+86138{uuid.uuid4().int % 10**8:08d}", **fields
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["code"] == "invalid_character"
    member = await new_member(harness, merchant)
    patched = await harness.client.patch(
        f"/v1/members/{member['id']}",
        json={"version": 1, "name": "\x00"},
        headers=harness.token(merchant),
    )
    assert patched.status_code == 422
