"""Tag rules on RFM segments: evaluated when a visit or refund reaches the analysis facts
(whichever consumer runs first), by the sweep for members without new visits and as recency
fades, and validated by name."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from contracts.ids import new_id
from members.birthdays.service import today_for
from members.birthdays.tasks import sweep_merchant

from .conftest import Harness, eventually
from .test_levels_tags import keyed, member_of, updates
from .test_member_analysis import VISITS, paid, refunded
from .test_members import new_member


async def merchant_today(harness: Harness, merchant: uuid.UUID) -> date:
    async with harness.app.state.database.transaction() as session:
        return await today_for(session, merchant)


async def deliver_everywhere(harness: Harness, merchant: uuid.UUID, *payloads: Any) -> None:
    """Deliver order events and wait until both the points and the visits consumers saw them."""
    envelopes = [harness.envelope(p, merchant, p.order_id) for p in payloads]
    for envelope in envelopes:
        await harness.deliver(envelope)
    for envelope in envelopes:
        await harness.processed(envelope, VISITS)
        await harness.processed(envelope)


async def rule(harness: Harness, merchant: uuid.UUID, **body: Any) -> dict[str, Any]:
    response = await harness.client.post(
        "/v1/member-tag-rules", json=body, headers=keyed(harness.token(merchant))
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def tags_of(harness: Harness, merchant: uuid.UUID, member_id: str) -> list[str]:
    tags: list[str] = (await member_of(harness, merchant, member_id))["tags"]
    return tags


async def test_rfm_segment_rules_follow_visits_refunds_and_time(harness: Harness) -> None:
    merchant = new_id()
    store = new_id()
    regular = await new_member(harness, merchant)
    lapsed = await new_member(harness, merchant)
    never = await new_member(harness, merchant)
    created = await rule(harness, merchant, tag="champion", rfm_segments=["important_value"])
    assert created["rfm_segments"] == ["important_value"]
    await rule(
        harness,
        merchant,
        tag="win-back",
        rfm_segments=["important_winback", "general_winback", "general_winback"],
    )
    today = await merchant_today(harness, merchant)

    # Five visits in the last week, 100.00 each: R5 F3 M3, important_value.
    regular_orders = [
        paid(uuid.UUID(regular["id"]), store, today - timedelta(days=day), 10_000, [(new_id(), 1)])
        for day in range(1, 6)
    ]
    await deliver_everywhere(harness, merchant, *regular_orders)
    assert "champion" in await tags_of(harness, merchant, regular["id"])
    # One big visit 200 days ago: R1 F1 M3, important_winback.
    old = paid(uuid.UUID(lapsed["id"]), store, today - timedelta(days=200), 60_000, [(new_id(), 1)])
    await deliver_everywhere(harness, merchant, old)
    assert await tags_of(harness, merchant, lapsed["id"]) == ["win-back"]

    # A member without visits gets the rule's tag from the sweep (general_winback); the
    # regular member keeps theirs, with no new version.
    assert await tags_of(harness, merchant, never["id"]) == []
    version = (await member_of(harness, merchant, regular["id"]))["version"]
    await sweep_merchant(harness.app.state.database, merchant)
    assert await tags_of(harness, merchant, never["id"]) == ["win-back"]
    assert (await member_of(harness, merchant, regular["id"]))["version"] == version

    # The same visit delivered again changes nothing.
    await deliver_everywhere(harness, merchant, regular_orders[0])
    assert (await member_of(harness, merchant, regular["id"]))["version"] == version

    # Recency fades: 100 days on, the regular scores R2 (important_retention).
    later = datetime.combine(today + timedelta(days=100), time(12), tzinfo=UTC)
    await sweep_merchant(harness.app.state.database, merchant, later)
    assert "champion" not in await tags_of(harness, merchant, regular["id"])
    await sweep_merchant(harness.app.state.database, merchant)
    assert "champion" in await tags_of(harness, merchant, regular["id"])

    # A full refund leaves four visits, 400.00: F2 M2, general_development.
    await deliver_everywhere(harness, merchant, refunded(regular_orders[0], 10_000))
    final = await member_of(harness, merchant, regular["id"])
    assert final["tags"] == []

    async def announced() -> list[dict[str, Any]]:
        found = updates(harness, regular["id"])
        return found if found and found[-1]["version"] == final["version"] else []

    events = await eventually(announced)
    assert events[-1]["tags"] == []
    assert any("champion" in e["tags"] for e in events)


async def test_rfm_segment_names_are_checked(harness: Harness) -> None:
    merchant = new_id()
    for bad, code in (
        (["important_value", "vip"], "unknown_rfm_segment"),
        ([], "too_short"),
        ("important_value", "expected_array"),
    ):
        response = await harness.client.post(
            "/v1/member-tag-rules",
            json={"tag": "x", "rfm_segments": bad},
            headers=keyed(harness.token(merchant)),
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["code"] == code, response.text
    created = await rule(harness, merchant, tag="x", rfm_segments=["general_value"])
    changed = await harness.client.put(
        f"/v1/member-tag-rules/{created['id']}",
        json={"version": 1, "rfm_segments": ["general_value", "nope"]},
        headers=harness.token(merchant),
    )
    assert changed.status_code == 422
    assert changed.json()["errors"][0]["code"] == "unknown_rfm_segment"
    changed = await harness.client.put(
        f"/v1/member-tag-rules/{created['id']}",
        json={"version": 1, "rfm_segments": ["important_retention"], "min_visit_count": 3},
        headers=harness.token(merchant),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["rfm_segments"] == ["important_retention"]
    assert changed.json()["min_visit_count"] == 3
    other = await harness.client.put(
        f"/v1/member-tag-rules/{created['id']}",
        json={"version": 2, "rfm_segments": ["general_value"]},
        headers=harness.token(new_id()),
    )
    assert other.status_code == 404
