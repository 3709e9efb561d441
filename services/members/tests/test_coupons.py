"""Coupons: template checks, issuing by hand, to a tag and on sign-up, per-member limits,
voiding, birthday coupons once a year with two sweeps at once, and each coupon's state as
orders' redemption steps arrive in and out of order, twice, or from another tenant."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa

from contracts.events.orders import CouponRedeemed, CouponReleased, CouponReserved
from contracts.ids import new_id
from contracts.money import Money
from members.birthdays.tasks import sweep_merchant
from members.config import Settings
from members.coupons.models import Coupon
from members.main import create_app
from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER
from servicekit.auth import (
    Role,
    StaticKeySource,
    TokenVerifier,
    generate_signing_key,
    public_jwks,
)
from servicekit.bus.factory import InMemoryBus
from servicekit.testing.tokens import bearer_headers

from .conftest import ALL_SCOPES, Harness, eventually
from .test_members import new_member


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def keyed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


async def make_template(harness: Harness, merchant: uuid.UUID, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "10 off 50",
        "kind": "full_reduction",
        "threshold": cny(5000),
        "amount_off": cny(1000),
        "valid_days": 30,
        **fields,
    }
    response = await harness.client.post(
        "/v1/coupon-templates", json=body, headers=keyed(harness.token(merchant))
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def issue(harness: Harness, merchant: uuid.UUID, template_id: str, member_id: str) -> Any:
    return await harness.client.post(
        f"/v1/coupon-templates/{template_id}/issue",
        json={"member_id": member_id},
        headers=keyed(harness.token(merchant)),
    )


async def coupons_of(
    harness: Harness, merchant: uuid.UUID, member_id: str, **params: str
) -> list[dict[str, Any]]:
    response = await harness.client.get(
        f"/v1/members/{member_id}/coupons", params=params, headers=harness.token(merchant)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


BAD_TEMPLATES: list[tuple[dict[str, Any], str, str]] = [
    ({"kind": "full_reduction", "amount_off": cny(100)}, "threshold", "threshold_required"),
    ({"kind": "full_reduction", "threshold": cny(100)}, "amount_off", "amount_off_required"),
    (
        {"kind": "full_reduction", "threshold": cny(100), "amount_off": cny(200)},
        "amount_off",
        "amount_off_exceeds_threshold",
    ),
    (
        {"kind": "full_reduction", "threshold": cny(500), "amount_off": cny(100), "cap": cny(1)},
        "cap",
        "not_applicable",
    ),
    ({"kind": "percentage"}, "percent_off_bp", "percent_off_bp_required"),
    (
        {"kind": "percentage", "percent_off_bp": 1000, "amount_off": cny(100)},
        "amount_off",
        "not_applicable",
    ),
    ({"kind": "no_threshold"}, "amount_off", "amount_off_required"),
    ({"kind": "no_threshold", "amount_off": cny(0)}, "amount_off", "amount_not_positive"),
    ({"kind": "product"}, "product_ids", "product_ids_required"),
    (
        {
            "kind": "percentage",
            "percent_off_bp": 1000,
            "cap": {"amount": 100, "currency": "USD"},
            "threshold": cny(100),
        },
        "cap",
        "currency_mismatch",
    ),
]


@pytest.mark.parametrize(("terms", "field", "code"), BAD_TEMPLATES)
async def test_template_terms_are_checked(
    harness: Harness, terms: dict[str, Any], field: str, code: str
) -> None:
    response = await harness.client.post(
        "/v1/coupon-templates",
        json={"name": "bad", "valid_days": 7, **terms},
        headers=keyed(harness.token(new_id())),
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in problem["errors"]
    ]


async def test_template_validity_and_store_checks(harness: Harness) -> None:
    merchant = new_id()
    base = {"name": "5 off", "kind": "no_threshold", "amount_off": cny(500)}
    now = datetime.now(UTC)
    cases = [
        ({}, "validity_required"),
        (
            {"valid_days": 3, "valid_from": now.isoformat(), "valid_until": now.isoformat()},
            "validity_ambiguous",
        ),
        ({"valid_from": now.isoformat()}, "validity_window_incomplete"),
        (
            {"valid_from": now.isoformat(), "valid_until": (now - timedelta(days=1)).isoformat()},
            "validity_window_empty",
        ),
    ]
    for extra, code in cases:
        response = await harness.client.post(
            "/v1/coupon-templates", json={**base, **extra}, headers=keyed(harness.token(merchant))
        )
        assert response.status_code == 422, response.text
        assert code in [e["code"] for e in response.json()["errors"]]
    # Money must be an integer of minor units.
    floaty = await harness.client.post(
        "/v1/coupon-templates",
        json={**base, "valid_days": 3, "amount_off": {"amount": 5.5, "currency": "CNY"}},
        headers=keyed(harness.token(merchant)),
    )
    assert floaty.status_code == 422

    # A store manager defines templates for their own stores only.
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    manager = bearer_headers(
        harness.key,
        merchant,
        scopes=frozenset({"coupons:manage"}),
        store_ids=frozenset({mine}),
        role=Role.STORE_MANAGER,
    )
    everywhere = await harness.client.post(
        "/v1/coupon-templates", json={**base, "valid_days": 3}, headers=keyed(manager)
    )
    assert everywhere.status_code == 422
    assert everywhere.json()["errors"][0]["code"] == "store_ids_required"
    elsewhere = await harness.client.post(
        "/v1/coupon-templates",
        json={**base, "valid_days": 3, "store_ids": [str(mine), str(theirs)]},
        headers=keyed(manager),
    )
    assert elsewhere.status_code == 404
    own = await harness.client.post(
        "/v1/coupon-templates",
        json={**base, "valid_days": 3, "store_ids": [str(mine)]},
        headers=keyed(manager),
    )
    assert own.status_code == 201, own.text
    # HQ's template (every store) is visible to the manager, not theirs to change.
    hq = await make_template(harness, merchant)
    change = await harness.client.patch(
        f"/v1/coupon-templates/{hq['id']}", json={"version": 1, "active": False}, headers=manager
    )
    assert change.status_code == 403
    assert change.json()["code"] == "template_outside_stores"
    listed = await harness.client.get("/v1/coupon-templates", headers=manager)
    assert {t["id"] for t in listed.json()["items"]} == {own.json()["id"], hq["id"]}
    # A cashier cannot define templates.
    cashier = bearer_headers(harness.key, merchant, scopes=frozenset({"orders:write"}))
    refused = await harness.client.post(
        "/v1/coupon-templates", json={**base, "valid_days": 3}, headers=keyed(cashier)
    )
    assert refused.status_code == 403


async def test_issue_by_hand_limit_void_and_event(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    product = new_id()
    template = await make_template(
        harness,
        merchant,
        kind="percentage",
        threshold=cny(2000),
        amount_off=None,
        percent_off_bp=1500,
        cap=cny(800),
        product_ids=[str(product)],
        per_member_limit=1,
    )
    first = await issue(harness, merchant, template["id"], member["id"])
    assert first.status_code == 201, first.text
    coupon = first.json()
    assert coupon["state"] == "issued"
    assert coupon["source"] == "manual"
    assert coupon["cap"] == cny(800)
    issued_at = datetime.fromisoformat(coupon["valid_from"])
    assert datetime.fromisoformat(coupon["valid_until"]) - issued_at == timedelta(days=30)

    second = await issue(harness, merchant, template["id"], member["id"])
    assert second.status_code == 409
    assert second.json()["code"] == "coupon_limit_reached"

    async def issued_events() -> list[dict[str, Any]]:
        return [
            e
            for e in harness.events("members.coupon", member["id"])
            if e["type"] == "members.coupon.issued"
        ]

    [event] = await eventually(issued_events)
    payload = event["payload"]
    assert payload["coupon_id"] == coupon["id"]
    assert payload["code"] == coupon["code"]
    assert payload["kind"] == "percentage"
    assert payload["percent_off_bp"] == 1500
    assert payload["cap"] == cny(800)
    assert payload["threshold"] == cny(2000)
    assert payload["product_ids"] == [str(product)]
    assert payload["store_ids"] is None
    assert event["merchant_id"] == str(merchant)

    url = f"/v1/members/{member['id']}/coupons/{coupon['id']}/void"
    voided = await harness.client.post(
        url, json={"reason": "sent by mistake"}, headers=keyed(harness.token(merchant))
    )
    assert voided.status_code == 200, voided.text
    assert voided.json()["state"] == "voided"
    again = await harness.client.post(
        url, json={"reason": "sent by mistake"}, headers=keyed(harness.token(merchant))
    )
    assert again.json()["state"] == "voided"

    async def voided_events() -> list[dict[str, Any]]:
        return [
            e
            for e in harness.events("members.coupon", member["id"])
            if e["type"] == "members.coupon.voided"
        ]

    [void_event] = await eventually(voided_events)
    assert void_event["payload"]["reason"] == "sent by mistake"
    # A voided coupon no longer counts towards the limit.
    third = await issue(harness, merchant, template["id"], member["id"])
    assert third.status_code == 201, third.text
    states = sorted(c["state"] for c in await coupons_of(harness, merchant, member["id"]))
    assert states == ["issued", "voided"]
    assert [c["id"] for c in await coupons_of(harness, merchant, member["id"], state="voided")] == [
        coupon["id"]
    ]

    # Another merchant's ids are not found.
    other = new_id()
    assert (await issue(harness, other, template["id"], member["id"])).status_code == 404
    own_template = await make_template(harness, other)
    assert (await issue(harness, other, own_template["id"], member["id"])).status_code == 404


async def test_concurrent_issues_never_pass_the_limit(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    template = await make_template(harness, merchant, per_member_limit=2)
    responses = await asyncio.gather(
        *(issue(harness, merchant, template["id"], member["id"]) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [201, 201, 409, 409, 409]
    assert len(await coupons_of(harness, merchant, member["id"])) == 2


async def test_only_an_unused_coupon_is_voided(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    template = await make_template(harness, merchant)
    coupon = (await issue(harness, merchant, template["id"], member["id"])).json()
    await step(harness, merchant, coupon, "reserved", 1)
    await coupon_state(harness, merchant, coupon, "reserved")
    refused = await harness.client.post(
        f"/v1/members/{member['id']}/coupons/{coupon['id']}/void",
        json={"reason": "too late"},
        headers=keyed(harness.token(merchant)),
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "coupon_not_voidable"


async def tag_member(harness: Harness, merchant: uuid.UUID, member_id: str, tag: str) -> None:
    response = await harness.client.post(
        f"/v1/members/{member_id}/tags", json={"tag": tag}, headers=keyed(harness.token(merchant))
    )
    assert response.status_code == 200, response.text
    assert tag in response.json()["tags"]


async def test_bulk_issue_to_a_tag_is_idempotent_per_batch_key(harness: Harness) -> None:
    merchant = new_id()
    tagged = [await new_member(harness, merchant) for _ in range(3)]
    untagged = await new_member(harness, merchant)
    for member in tagged:
        await tag_member(harness, merchant, member["id"], "vip")
    template = await make_template(harness, merchant)
    url = f"/v1/coupon-templates/{template['id']}/issue-to-tag"

    async def run(key: str) -> dict[str, Any]:
        response = await harness.client.post(
            url, json={"tag": "vip", "batch_key": key}, headers=keyed(harness.token(merchant))
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    assert await run("may") == {"matched": 3, "issued": 3, "already_issued": 0, "over_limit": 0}
    assert await run("may") == {"matched": 3, "issued": 0, "already_issued": 3, "over_limit": 0}
    late = await new_member(harness, merchant)
    await tag_member(harness, merchant, late["id"], "vip")
    # Two runs of one batch at once still issue the newcomer one coupon.
    both = await asyncio.gather(run("may"), run("may"))
    assert sorted(r["issued"] for r in both) == [0, 1]
    for member in [*tagged, late]:
        assert len(await coupons_of(harness, merchant, member["id"])) == 1
    assert await coupons_of(harness, merchant, untagged["id"]) == []
    # Another batch is another coupon.
    assert (await run("june"))["issued"] == 4
    # The same request replayed under its Idempotency-Key answers what it answered.
    headers = keyed(harness.token(merchant))
    body = {"tag": "vip", "batch_key": "july"}
    first = await harness.client.post(url, json=body, headers=headers)
    replay = await harness.client.post(url, json=body, headers=headers)
    assert (
        first.json()
        == replay.json()
        == {"matched": 4, "issued": 4, "already_issued": 0, "over_limit": 0}
    )
    assert replay.headers.get("idempotent-replayed") == "true"

    # A limit is counted, not exceeded.
    limited = await make_template(harness, merchant, per_member_limit=1)
    limited_url = f"/v1/coupon-templates/{limited['id']}/issue-to-tag"
    await issue(harness, merchant, limited["id"], tagged[0]["id"])
    response = await harness.client.post(
        limited_url, json={"tag": "vip", "batch_key": "x"}, headers=keyed(harness.token(merchant))
    )
    assert response.json() == {"matched": 4, "issued": 3, "already_issued": 0, "over_limit": 1}


async def test_signup_coupon_is_issued_once_on_registration(harness: Harness) -> None:
    merchant = new_id()
    welcome = await make_template(harness, merchant, issue_on_signup=True)
    await make_template(harness, merchant, issue_on_signup=True, active=False)
    cashier = bearer_headers(
        harness.key,
        merchant,
        scopes=frozenset({"orders:write", "members:write"}),
        store_ids=frozenset({uuid.uuid4()}),
        role=Role.CASHIER,
    )
    phone = f"+86139{uuid.uuid4().int % 10**8:08d}"
    headers = keyed(cashier)
    created = await harness.client.post("/v1/members", json={"phone": phone}, headers=headers)
    assert created.status_code == 201, created.text
    replay = await harness.client.post("/v1/members", json={"phone": phone}, headers=headers)
    assert replay.status_code == 201
    [coupon] = await coupons_of(harness, merchant, created.json()["id"])
    assert coupon["template_id"] == welcome["id"]
    assert coupon["source"] == "signup"


async def test_birthday_coupons_once_a_year_with_two_sweeps_at_once(harness: Harness) -> None:
    merchant = new_id()
    now = datetime(2026, 5, 10, 4, 0, tzinfo=UTC)
    born_in_may = await new_member(harness, merchant)
    born_in_june = await new_member(harness, merchant)
    no_birthday = await new_member(harness, merchant)
    for member, birthday in ((born_in_may, date(1990, 5, 28)), (born_in_june, date(1990, 6, 1))):
        response = await harness.client.patch(
            f"/v1/members/{member['id']}",
            json={"version": member["version"], "birthday": birthday.isoformat()},
            headers=harness.token(merchant),
        )
        assert response.status_code == 200, response.text
    gift = await make_template(harness, merchant, issue_on_birthday=True, valid_days=31)
    database = harness.app.state.database

    await asyncio.gather(*(sweep_merchant(database, merchant, now) for _ in range(2)))
    await sweep_merchant(database, merchant, now + timedelta(days=3))
    [coupon] = await coupons_of(harness, merchant, born_in_may["id"])
    assert coupon["source"] == "birthday"
    assert coupon["template_id"] == gift["id"]
    assert datetime.fromisoformat(coupon["valid_from"]) == now
    assert await coupons_of(harness, merchant, born_in_june["id"]) == []
    assert await coupons_of(harness, merchant, no_birthday["id"]) == []
    # June in Shanghai begins at 16:00 UTC on May 31.
    await sweep_merchant(database, merchant, datetime(2026, 5, 31, 16, 30, tzinfo=UTC))
    assert len(await coupons_of(harness, merchant, born_in_june["id"])) == 1
    # Next year: one more.
    await asyncio.gather(
        *(sweep_merchant(database, merchant, now + timedelta(days=365)) for _ in range(2))
    )
    assert len(await coupons_of(harness, merchant, born_in_may["id"])) == 2
    async with database.transaction() as session:
        keys = await session.scalars(
            sa.select(Coupon.source_key).where(Coupon.member_id == uuid.UUID(born_in_may["id"]))
        )
        assert sorted(keys) == ["2026", "2027"]


# --- redemption steps from orders ------------------------------------------------------------


async def step(
    harness: Harness,
    merchant: uuid.UUID,
    coupon: dict[str, Any],
    kind: str,
    sequence: int,
    *,
    order_id: uuid.UUID | None = None,
) -> Any:
    order_id = order_id or uuid.UUID(int=sequence)
    common = {
        "coupon_id": uuid.UUID(coupon["id"]),
        "member_id": uuid.UUID(coupon["member_id"]),
        "order_id": order_id,
        "sequence": sequence,
    }
    payload: CouponReserved | CouponRedeemed | CouponReleased
    if kind == "reserved":
        payload = CouponReserved(**common, store_id=new_id(), discount=Money.of(1000, "CNY"))
    elif kind == "redeemed":
        payload = CouponRedeemed(**common, store_id=new_id(), discount=Money.of(1000, "CNY"))
    else:
        payload = CouponReleased(**common, reason="cancelled")
    envelope = harness.envelope(payload, merchant, uuid.UUID(coupon["id"]))
    await harness.deliver(envelope)
    await harness.processed(envelope, "members.coupons")
    return envelope


async def coupon_state(
    harness: Harness, merchant: uuid.UUID, coupon: dict[str, Any], state: str
) -> dict[str, Any]:
    response = await harness.client.get(
        f"/v1/members/{coupon['member_id']}/coupons/{coupon['id']}",
        headers=harness.token(merchant),
    )
    body: dict[str, Any] = response.json()
    assert body["state"] == state, body
    return body


async def test_redemption_steps_in_order_late_and_twice(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    template = await make_template(harness, merchant)
    coupon = (await issue(harness, merchant, template["id"], member["id"])).json()

    reserved = await step(harness, merchant, coupon, "reserved", 1)
    held = await coupon_state(harness, merchant, coupon, "reserved")
    assert held["order_id"] == str(uuid.UUID(int=1))
    assert held["discount"] == cny(1000)
    await step(harness, merchant, coupon, "released", 2)
    await coupon_state(harness, merchant, coupon, "issued")
    # The same reservation delivered again, and republished under a new event id: late.
    await harness.deliver(reserved)
    await step(harness, merchant, coupon, "reserved", 1)
    await coupon_state(harness, merchant, coupon, "issued")
    await step(harness, merchant, coupon, "reserved", 3, order_id=uuid.UUID(int=9))
    await step(harness, merchant, coupon, "redeemed", 4, order_id=uuid.UUID(int=9))
    used = await coupon_state(harness, merchant, coupon, "redeemed")
    assert used["order_id"] == str(uuid.UUID(int=9))


async def test_redemption_steps_out_of_order(harness: Harness) -> None:
    merchant = new_id()
    member = await new_member(harness, merchant)
    template = await make_template(harness, merchant)
    coupon = (await issue(harness, merchant, template["id"], member["id"])).json()

    await step(harness, merchant, coupon, "redeemed", 2)
    await step(harness, merchant, coupon, "reserved", 1)
    await coupon_state(harness, merchant, coupon, "redeemed")
    # A refund in full gives it back; the earlier steps arriving after change nothing.
    await step(harness, merchant, coupon, "released", 3)
    await step(harness, merchant, coupon, "redeemed", 2)
    await coupon_state(harness, merchant, coupon, "issued")


async def test_redemption_steps_of_another_tenant_change_nothing(harness: Harness) -> None:
    merchant, other = new_id(), new_id()
    member = await new_member(harness, merchant)
    template = await make_template(harness, merchant)
    coupon = (await issue(harness, merchant, template["id"], member["id"])).json()
    await step(harness, other, coupon, "redeemed", 1)
    await coupon_state(harness, merchant, coupon, "issued")
    # A step naming another member is not applied either.
    stranger = await new_member(harness, merchant)
    await step(harness, merchant, {**coupon, "member_id": stranger["id"]}, "redeemed", 1)
    await coupon_state(harness, merchant, coupon, "issued")


async def test_the_running_service_sweeps_birthday_coupons(members_url: str) -> None:
    """The sweep is wired into the process: started with the consumers, it issues the coupon
    of a member whose birthday month it is, without anyone calling it."""
    settings = Settings(
        database_url=members_url,
        log_format="console",
        outbox_poll_interval=0.05,
        db_pool_size=3,
        benefits_sweep_interval=0.1,
    )
    key = generate_signing_key()
    verifier = TokenVerifier(
        StaticKeySource(public_jwks([key])), issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE
    )
    app = create_app(settings, bus=InMemoryBus(), token_verifier=verifier)
    merchant = new_id()
    headers = bearer_headers(key, merchant, scopes=ALL_SCOPES)
    month = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).month
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        template = await client.post(
            "/v1/coupon-templates",
            json={
                "name": "birthday",
                "kind": "no_threshold",
                "amount_off": cny(1000),
                "valid_days": 31,
                "issue_on_birthday": True,
            },
            headers=keyed(headers),
        )
        assert template.status_code == 201, template.text
        member = await client.post(
            "/v1/members",
            json={
                "phone": f"+86137{uuid.uuid4().int % 10**8:08d}",
                "birthday": date(1988, month, 1).isoformat(),
            },
            headers=keyed(headers),
        )
        assert member.status_code == 201, member.text

        async def issued() -> list[dict[str, Any]]:
            response = await client.get(
                f"/v1/members/{member.json()['id']}/coupons", headers=headers
            )
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        [coupon] = await eventually(issued)
        assert coupon["source"] == "birthday"
