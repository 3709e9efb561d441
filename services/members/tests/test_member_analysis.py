"""Member analysis on visit facts from paid and refunded orders: exact figures per period and
store, per member, RFM cut points and segments; replays and refunds before payments; other
tenants and other stores see nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
import pytest_asyncio

from contracts.envelope import EventEnvelope
from contracts.events.orders import OrderLine, OrderPaid, OrderRefunded, Tender
from contracts.ids import new_id
from contracts.money import Money
from members.analysis.rfm import SEGMENTS, rfm_segment
from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import Harness
from .test_members import new_member

READER = frozenset({"reports:read"})
VISITS = "members.visits"


def cny(amount: int) -> Money:
    return Money.of(amount, "CNY")


def paid(
    member_id: uuid.UUID | None,
    store_id: uuid.UUID,
    day: date,
    total: int,
    lines: list[tuple[uuid.UUID, int]],
    order_id: uuid.UUID | None = None,
) -> OrderPaid:
    at = datetime(day.year, day.month, day.day, 4, tzinfo=UTC)
    share = total // len(lines)
    return OrderPaid(
        order_id=order_id or new_id(),
        store_id=store_id,
        channel="pos",
        member_id=member_id,
        lines=[
            OrderLine(
                line_id=new_id(),
                product_id=product,
                name="item",
                quantity=quantity,
                unit_price=cny(share),
                discount=cny(0),
                total=cny(share if i else total - share * (len(lines) - 1)),
            )
            for i, (product, quantity) in enumerate(lines)
        ],
        subtotal=cny(total),
        discount_total=cny(0),
        total=cny(total),
        tenders=[Tender(payment_id=new_id(), method="cash", amount=cny(total))],
        occurred_at=at,
        paid_at=at,
        business_day=day,
    )


def refunded(order: OrderPaid, refunded_total: int) -> OrderRefunded:
    return OrderRefunded(
        order_id=order.order_id,
        store_id=order.store_id,
        member_id=order.member_id,
        refund_id=new_id(),
        payment_id=new_id(),
        amount=cny(refunded_total),
        refunded_total=cny(refunded_total),
        order_total=order.total,
        fully_refunded=refunded_total >= order.total.amount,
    )


async def deliver(harness: Harness, merchant: uuid.UUID, *payloads: Any) -> list[EventEnvelope]:
    envelopes = [harness.envelope(p, merchant, p.order_id) for p in payloads]
    for envelope in envelopes:
        await harness.deliver(envelope)
    for envelope in envelopes:
        await harness.processed(envelope, VISITS)
    return envelopes


def reader(
    harness: Harness, merchant: uuid.UUID, stores: frozenset[uuid.UUID] | None = None
) -> dict[str, str]:
    role = Role.HQ_ADMIN if stores is None else Role.STORE_MANAGER
    return bearer_headers(harness.key, merchant, scopes=READER, store_ids=stores, role=role)


async def get(harness: Harness, url: str, headers: dict[str, str], **params: Any) -> Any:
    response = await harness.client.get(url, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


MARCH = {"business_day_from": "2026-03-01", "business_day_to": "2026-03-31"}


@pytest.fixture(scope="module")
def ids() -> dict[str, uuid.UUID]:
    return {name: new_id() for name in ("merchant", "s1", "s2", "p1", "p2", "p3")}


async def seed(harness: Harness, ids: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    merchant, s1, s2 = ids["merchant"], ids["s1"], ids["s2"]
    p1, p2, p3 = ids["p1"], ids["p2"], ids["p3"]
    a, b, c = [uuid.UUID((await new_member(harness, merchant))["id"]) for _ in range(3)]
    b_partial = paid(b, s1, date(2026, 3, 20), 4000, [(p2, 2)])
    b_full = paid(b, s1, date(2026, 3, 21), 999, [(p1, 10)])
    # Refunds delivered before their payments: the visit must still come out net.
    await deliver(harness, merchant, refunded(b_partial, 1000), refunded(b_full, 999))
    events = [
        paid(a, s1, date(2026, 2, 10), 1000, [(p1, 1)]),
        paid(a, s1, date(2026, 3, 2), 3000, [(p1, 2), (p2, 1)]),
        paid(a, s2, date(2026, 3, 15), 2001, [(p1, 1)]),
        paid(a, s1, date(2026, 4, 2), 700, [(p3, 1)]),
        paid(b, s1, date(2026, 3, 5), 5000, [(p3, 5)]),
        b_partial,
        b_full,
        paid(c, s2, date(2026, 3, 10), 1500, [(p2, 1)]),
        paid(None, s1, date(2026, 3, 10), 100_000, [(p3, 50)]),  # no member: not a visit
    ]
    envelopes = await deliver(harness, merchant, *events)
    # Replayed, in any order, under the same event id or a new one: nothing changes.
    for envelope in reversed(envelopes):
        await harness.deliver(envelope)
    await deliver(harness, merchant, *events[:3])
    return {"a": a, "b": b, "c": c}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def members(harness: Harness, ids: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    return await seed(harness, ids)


async def test_period_figures_are_exact(
    harness: Harness, ids: dict[str, uuid.UUID], members: dict[str, uuid.UUID]
) -> None:
    body = await get(harness, "/v1/members/analysis", reader(harness, ids["merchant"]), **MARCH)
    assert body["members"] == 3
    assert body["visits"] == 5  # b's fully refunded order is no visit
    assert body["spend"] == {"amount": 14501, "currency": "CNY"}
    assert body["average_ticket"] == {"amount": 2900, "currency": "CNY"}  # 2900.2
    assert body["visits_per_member"] == "1.67"
    assert body["repeat_members"] == 2
    assert body["repurchase_rate"] == "0.6667"
    assert body["new"] == {"members": 2, "visits": 3, "spend": {"amount": 9500, "currency": "CNY"}}
    assert body["returning"] == {
        "members": 1,
        "visits": 2,
        "spend": {"amount": 5001, "currency": "CNY"},
    }
    assert [(f["product_id"], f["quantity"], f["visits"]) for f in body["favourite_products"]] == [
        (str(ids["p3"]), 5, 1),
        (str(ids["p2"]), 4, 3),
        (str(ids["p1"]), 3, 2),
    ]


async def test_one_store_and_a_store_scoped_caller(
    harness: Harness, ids: dict[str, uuid.UUID], members: dict[str, uuid.UUID]
) -> None:
    merchant = ids["merchant"]
    body = await get(
        harness, "/v1/members/analysis", reader(harness, merchant), store_id=ids["s1"], **MARCH
    )
    assert (body["members"], body["visits"], body["spend"]["amount"]) == (2, 3, 11000)
    assert body["average_ticket"]["amount"] == 3667  # 3666.67
    assert (body["repeat_members"], body["repurchase_rate"]) == (1, "0.5000")
    assert body["new"] == {"members": 1, "visits": 2, "spend": {"amount": 8000, "currency": "CNY"}}
    assert body["returning"]["members"] == 1

    # A manager of the second store sees its visits only; there a's first visit is in March.
    manager = reader(harness, merchant, frozenset({ids["s2"]}))
    body = await get(harness, "/v1/members/analysis", manager, **MARCH)
    assert (body["members"], body["visits"], body["spend"]["amount"]) == (2, 2, 3501)
    assert body["new"]["members"] == 2
    hidden = await harness.client.get(
        "/v1/members/analysis", params={**MARCH, "store_id": str(ids["s1"])}, headers=manager
    )
    assert hidden.status_code == 404


async def test_one_member_and_their_rfm(
    harness: Harness, ids: dict[str, uuid.UUID], members: dict[str, uuid.UUID]
) -> None:
    url = f"/v1/members/{members['a']}/analysis"
    body = await get(harness, url, reader(harness, ids["merchant"]), **MARCH)
    assert body["visits"] == 2
    assert body["spend"]["amount"] == 5001
    assert body["average_ticket"]["amount"] == 2501  # 2500.5, half up
    assert (body["first_visit"], body["last_visit"]) == ("2026-02-10", "2026-04-02")
    assert body["is_new"] is False
    assert [f["product_id"] for f in body["favourite_products"]] == [
        str(ids["p1"]),
        str(ids["p2"]),
    ]
    # As of 31 March: last visit 16 days before (R4), 3 visits (F2), 60.01 yuan (M1).
    assert body["rfm"]["code"] == "421"
    assert body["rfm"]["segment"] == "general_development"

    b = await get(
        harness, f"/v1/members/{members['b']}/analysis", reader(harness, ids["merchant"]), **MARCH
    )
    assert (b["visits"], b["spend"]["amount"], b["is_new"]) == (2, 8000, True)


async def test_rfm_summary_by_segment(harness: Harness, ids: dict[str, uuid.UUID]) -> None:
    merchant, store = new_id(), new_id()
    big, lapsed, regular = [
        uuid.UUID((await new_member(harness, merchant))["id"]) for _ in range(3)
    ]
    product = new_id()
    events = [
        paid(big, store, date(2026, 3, 30), 600_000, [(product, 1)]),
        paid(lapsed, store, date(2025, 1, 1), 100, [(product, 1)]),
        *(paid(regular, store, date(2026, 3, d), 10_000, [(product, 1)]) for d in range(1, 6)),
    ]
    await deliver(harness, merchant, *events)
    body = await get(harness, "/v1/members/rfm", reader(harness, merchant), as_of="2026-03-31")
    assert body["members"] == 3
    assert body["cut_points"] == {
        "recency_days": [7, 30, 90, 180],
        "frequency": [20, 10, 5, 2],
        "monetary": [500000, 200000, 50000, 10000],
        "window_days": 365,
    }
    counts = {s["segment"]: s["members"] for s in body["segments"]}
    assert len(counts) == 8
    # big: R5 F1 M5; lapsed: 454 days, no visit in the window; regular: R4 F3 M3.
    assert {k: v for k, v in counts.items() if v} == {
        "important_development": 1,
        "general_winback": 1,
        "important_value": 1,
    }


@pytest.mark.parametrize(
    ("recency", "expected"),
    [(0, 5), (7, 5), (8, 4), (30, 4), (31, 3), (90, 3), (91, 2), (180, 2), (181, 1), (None, 1)],
)
def test_recency_cut_points(recency: int | None, expected: int) -> None:
    assert rfm_segment(recency, 0, 0).recency == expected


@pytest.mark.parametrize(
    ("visits", "expected"),
    [(25, 5), (20, 5), (19, 4), (10, 4), (9, 3), (5, 3), (4, 2), (2, 2), (1, 1), (0, 1)],
)
def test_frequency_cut_points(visits: int, expected: int) -> None:
    assert rfm_segment(None, visits, 0).frequency == expected


@pytest.mark.parametrize(
    ("spend", "expected"),
    [
        (500_000, 5),
        (499_999, 4),
        (200_000, 4),
        (199_999, 3),
        (50_000, 3),
        (49_999, 2),
        (10_000, 2),
        (9_999, 1),
        (0, 1),
    ],
)
def test_monetary_cut_points(spend: int, expected: int) -> None:
    assert rfm_segment(None, 0, spend).monetary == expected


def test_segments_follow_high_and_low_scores() -> None:
    # A score of 3 is high, 2 is low, on each axis.
    for (r_high, f_high, m_high), segment in SEGMENTS.items():
        result = rfm_segment(90 if r_high else 91, 5 if f_high else 4, 50_000 if m_high else 49_999)
        assert result.segment == segment, (r_high, f_high, m_high)
    assert len(set(SEGMENTS.values())) == 8


async def test_other_tenants_see_nothing(
    harness: Harness, ids: dict[str, uuid.UUID], members: dict[str, uuid.UUID]
) -> None:
    intruder = new_id()
    response = await harness.client.get(
        f"/v1/members/{members['a']}/analysis", params=MARCH, headers=reader(harness, intruder)
    )
    assert response.status_code == 404
    body = await get(harness, "/v1/members/analysis", reader(harness, intruder), **MARCH)
    assert (body["members"], body["visits"], body["favourite_products"]) == (0, 0, [])
    assert body["average_ticket"]["amount"] == 0
    rfm = await get(harness, "/v1/members/rfm", reader(harness, intruder), as_of="2026-03-31")
    assert rfm["members"] == 0


async def test_bad_ranges_and_missing_scope(harness: Harness, ids: dict[str, uuid.UUID]) -> None:
    headers = reader(harness, ids["merchant"])
    backwards = await harness.client.get(
        "/v1/members/analysis",
        params={"business_day_from": "2026-03-31", "business_day_to": "2026-03-01"},
        headers=headers,
    )
    assert backwards.status_code == 422
    assert backwards.json()["code"] == "invalid_range"
    too_long = await harness.client.get(
        "/v1/members/analysis",
        params={"business_day_from": "2025-01-01", "business_day_to": "2026-03-01"},
        headers=headers,
    )
    assert too_long.json()["code"] == "invalid_range"
    unknown = await harness.client.get(
        "/v1/members/analysis", params={**MARCH, "currency": "XXQ"}, headers=headers
    )
    assert unknown.status_code == 422
    cashier = bearer_headers(harness.key, ids["merchant"], scopes=frozenset({"orders:write"}))
    denied = await harness.client.get("/v1/members/analysis", params=MARCH, headers=cashier)
    assert denied.status_code == 403
