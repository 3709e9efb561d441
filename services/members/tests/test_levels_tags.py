"""Levels, tags and birthday points: members moving up on paid orders (once per order, also
when the payment is delivered twice), points multiplied by level and birthday month and
rounded once, manual and rule-based tags, and members.member.updated with a rising version."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from contracts.ids import new_id
from members.birthdays.tasks import sweep_merchant
from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import Harness, eventually
from .test_members import ledger, new_member, paid_event, refund_event


def keyed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


async def define_level(harness: Harness, merchant: uuid.UUID, **body: Any) -> dict[str, Any]:
    response = await harness.client.post(
        "/v1/member-levels", json=body, headers=keyed(harness.token(merchant))
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def pay(harness: Harness, merchant: uuid.UUID, member_id: str, total: int) -> Any:
    envelope = harness.envelope(
        paid_event(new_id(), uuid.UUID(member_id), total), merchant, new_id()
    )
    await harness.deliver(envelope)
    await harness.processed(envelope)
    return envelope


async def member_of(harness: Harness, merchant: uuid.UUID, member_id: str) -> dict[str, Any]:
    response = await harness.client.get(f"/v1/members/{member_id}", headers=harness.token(merchant))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def updates(harness: Harness, member_id: str) -> list[dict[str, Any]]:
    return [
        e["payload"]
        for e in harness.events("members.member", member_id)
        if e["type"] == "members.member.updated"
    ]


async def test_level_definitions_are_checked(harness: Harness) -> None:
    merchant = new_id()
    await define_level(harness, merchant, name="silver", rank=1, basis="spend", threshold=100)
    same_name = await harness.client.post(
        "/v1/member-levels",
        json={"name": "silver", "rank": 2, "basis": "spend", "threshold": 200},
        headers=keyed(harness.token(merchant)),
    )
    assert same_name.status_code == 409
    assert same_name.json()["code"] == "level_name_taken"
    same_rank = await harness.client.post(
        "/v1/member-levels",
        json={"name": "gold", "rank": 1, "basis": "spend", "threshold": 200},
        headers=keyed(harness.token(merchant)),
    )
    assert same_rank.json()["code"] == "level_rank_taken"
    for bad in (
        {"name": "x", "rank": 3, "basis": "visits", "threshold": 1},
        {"name": "x", "rank": 3, "basis": "spend", "threshold": 1.5},
        {"name": "x", "rank": 3, "basis": "spend", "threshold": 1, "points_multiplier_bp": 5000},
    ):
        response = await harness.client.post(
            "/v1/member-levels", json=bad, headers=keyed(harness.token(merchant))
        )
        assert response.status_code == 422, response.text
    manager = bearer_headers(
        harness.key,
        merchant,
        scopes=frozenset({"members:write", "coupons:manage"}),
        store_ids=frozenset({uuid.uuid4()}),
        role=Role.STORE_MANAGER,
    )
    refused = await harness.client.post(
        "/v1/member-levels",
        json={"name": "gold", "rank": 2, "basis": "spend", "threshold": 200},
        headers=keyed(manager),
    )
    assert refused.status_code == 403
    # Another merchant sees none of these.
    listed = await harness.client.get("/v1/member-levels", headers=harness.token(new_id()))
    assert listed.json() == []


async def test_paid_orders_move_members_up_and_multiply_their_points(harness: Harness) -> None:
    merchant = new_id()
    await define_level(
        harness,
        merchant,
        name="silver",
        rank=1,
        basis="spend",
        threshold=10_000,
        points_multiplier_bp=15_000,
    )
    await define_level(
        harness,
        merchant,
        name="gold",
        rank=2,
        basis="points",
        threshold=400,
        points_multiplier_bp=20_000,
        discount_bp=500,
    )
    member = await new_member(harness, merchant)
    member_id = member["id"]

    await pay(harness, merchant, member_id, 12_000)
    after_first = await member_of(harness, merchant, member_id)
    assert after_first["level"] == "silver"
    assert after_first["points_balance"] == 120  # the order was paid before the level

    second = await pay(harness, merchant, member_id, 10_000)
    assert (await member_of(harness, merchant, member_id))["points_balance"] == 270
    # The same payment again: no points, no visit, no level counted twice.
    await harness.deliver(second)
    await pay(harness, merchant, member_id, 0)  # a zero order still counts as a visit
    assert (await member_of(harness, merchant, member_id))["level"] == "silver"

    await pay(harness, merchant, member_id, 10_000)
    now = await member_of(harness, merchant, member_id)
    assert now["points_balance"] == 420
    assert now["level"] == "gold"
    entries = (await ledger(harness, merchant, member_id))["items"]
    assert [e["points"] for e in entries] == [150, 0, 150, 120]

    async def levelled() -> list[dict[str, Any]]:
        found = updates(harness, member_id)
        return found if found and found[-1]["level"] == "gold" else []

    events = await eventually(levelled)
    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions))
    assert [e["level"] for e in events] == [None, "silver", "gold"]
    assert events[-1]["version"] == now["version"]


async def test_birthday_month_multiplies_points_rounded_once(harness: Harness) -> None:
    merchant = new_id()
    await define_level(
        harness,
        merchant,
        name="silver",
        rank=1,
        basis="spend",
        threshold=0,
        points_multiplier_bp=15_000,
    )
    benefit = await harness.client.put(
        "/v1/birthday-benefits",
        json={"points_multiplier_bp": 20_000, "version": 0},
        headers=harness.token(merchant),
    )
    assert benefit.status_code == 200, benefit.text
    stale = await harness.client.put(
        "/v1/birthday-benefits",
        json={"points_multiplier_bp": 30_000, "version": 0},
        headers=harness.token(merchant),
    )
    assert stale.status_code == 409
    bad_zone = await harness.client.put(
        "/v1/birthday-benefits",
        json={"points_multiplier_bp": 20_000, "timezone": "Mars/Olympus"},
        headers=harness.token(merchant),
    )
    assert bad_zone.status_code == 422
    assert bad_zone.json()["errors"][0]["code"] == "unknown_timezone"

    this_month = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).month
    other_month = this_month % 12 + 1
    birthday_boy = await new_member(harness, merchant)
    ordinary = await new_member(harness, merchant)
    for member, month in ((birthday_boy, this_month), (ordinary, other_month)):
        response = await harness.client.patch(
            f"/v1/members/{member['id']}",
            json={"version": member["version"], "birthday": date(1990, month, 1).isoformat()},
            headers=harness.token(merchant),
        )
        assert response.status_code == 200, response.text
    # A zero-threshold level is reached by the first change: both hold silver already.
    assert (await member_of(harness, merchant, birthday_boy["id"]))["level"] == "silver"

    await pay(harness, merchant, birthday_boy["id"], 10_099)
    await pay(harness, merchant, ordinary["id"], 10_099)
    # 10099 fen x 1.5 x 2 = 302.97 points, rounded down once (not 100 x 1.5 x 2 = 300).
    assert (await member_of(harness, merchant, birthday_boy["id"]))["points_balance"] == 302
    assert (await member_of(harness, merchant, ordinary["id"]))["points_balance"] == 151


async def test_manual_and_rule_tags(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    member_id = member["id"]
    rule = await harness.client.post(
        "/v1/member-tag-rules",
        json={"tag": "big-spender", "min_total_spend": 20_000, "min_visit_count": 2},
        headers=keyed(harness.token(merchant)),
    )
    assert rule.status_code == 201, rule.text
    duplicate = await harness.client.post(
        "/v1/member-tag-rules",
        json={"tag": "big-spender", "min_visit_count": 1},
        headers=keyed(harness.token(merchant)),
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "tag_rule_exists"
    empty = await harness.client.post(
        "/v1/member-tag-rules", json={"tag": "nothing"}, headers=keyed(harness.token(merchant))
    )
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["code"] == "rule_without_condition"

    added = await harness.client.post(
        f"/v1/members/{member_id}/tags",
        json={"tag": "big-spender"},
        headers=keyed(harness.token(merchant)),
    )
    assert added.json()["tags"] == ["big-spender"]
    await pay(harness, merchant, member_id, 15_000)
    await pay(harness, merchant, member_id, 5_000)
    # Rule met and manual: removing the manual one keeps the rule's.
    removed = await harness.client.delete(
        f"/v1/members/{member_id}/tags/big-spender", headers=harness.token(merchant)
    )
    assert removed.status_code == 200
    assert removed.json()["tags"] == ["big-spender"]

    # A rule no longer met (after the sweep) takes away only its own tag.
    await harness.client.post(
        f"/v1/members/{member_id}/tags", json={"tag": "vip"}, headers=keyed(harness.token(merchant))
    )
    changed = await harness.client.put(
        f"/v1/member-tag-rules/{rule.json()['id']}",
        json={"version": 1, "min_total_spend": 1_000_000},
        headers=harness.token(merchant),
    )
    assert changed.status_code == 200, changed.text
    assert sorted((await member_of(harness, merchant, member_id))["tags"]) == ["big-spender", "vip"]
    await sweep_merchant(harness.app.state.database, merchant)
    await sweep_merchant(harness.app.state.database, merchant)
    final = await member_of(harness, merchant, member_id)
    assert final["tags"] == ["vip"]

    async def announced() -> list[dict[str, Any]]:
        found = updates(harness, member_id)
        return found if found and found[-1]["version"] == final["version"] else []

    events = await eventually(announced)
    assert events[-1]["tags"] == ["vip"]
    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions)), "one event per version, rising"

    # Another merchant's member and rule are not found.
    other = harness.token(new_id())
    assert (
        await harness.client.post(
            f"/v1/members/{member_id}/tags", json={"tag": "x"}, headers=keyed(other)
        )
    ).status_code == 404
    assert (
        await harness.client.put(
            f"/v1/member-tag-rules/{rule.json()['id']}",
            json={"version": 2, "min_visit_count": 1},
            headers=other,
        )
    ).status_code == 404


async def test_birthday_and_patch_changes_are_announced(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    rule = await harness.client.post(
        "/v1/member-tag-rules",
        json={"tag": "born-in-march", "birthday_month": 3},
        headers=keyed(harness.token(merchant)),
    )
    assert rule.status_code == 201
    response = await harness.client.patch(
        f"/v1/members/{member['id']}",
        json={"version": 1, "birthday": "1992-03-14", "tags": ["tea"]},
        headers=harness.token(merchant),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tags"] == ["tea", "born-in-march"]
    assert body["version"] == 2

    async def announced() -> list[dict[str, Any]]:
        return [e for e in updates(harness, member["id"]) if e["version"] == 2]

    [event] = await eventually(announced)
    assert event["birthday"] == "1992-03-14"
    assert event["tags"] == ["born-in-march", "tea"]
    # A change touching none of them announces nothing.
    renamed = await harness.client.patch(
        f"/v1/members/{member['id']}",
        json={"version": 2, "name": "Han Meimei"},
        headers=harness.token(merchant),
    )
    assert renamed.status_code == 200
    assert [e["version"] for e in updates(harness, member["id"])] == [1, 2]


async def test_a_points_reversal_takes_a_balance_tag_away(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    member_id = member["id"]
    rule = await harness.client.post(
        "/v1/member-tag-rules",
        json={"tag": "points-rich", "min_points_balance": 100},
        headers=keyed(harness.token(merchant)),
    )
    assert rule.status_code == 201
    order_id = new_id()
    paid = harness.envelope(paid_event(order_id, uuid.UUID(member_id), 15_000), merchant, order_id)
    await harness.deliver(paid)
    await harness.processed(paid)
    assert (await member_of(harness, merchant, member_id))["tags"] == ["points-rich"]
    refund = harness.envelope(
        refund_event(order_id, uuid.UUID(member_id), 15_000, 15_000, 15_000), merchant, order_id
    )
    await harness.deliver(refund)
    await harness.processed(refund)
    after = await member_of(harness, merchant, member_id)
    assert after["points_balance"] == 0
    assert after["tags"] == []
