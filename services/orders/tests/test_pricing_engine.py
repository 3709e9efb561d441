"""The pricing engine on its own: each rule priced to the fen, the order of application,
exclusivity, and coupons' terms. No database: the engine takes everything as arguments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.events.members import CouponIssued
from contracts.money import Money
from orders.promotions import engine
from orders.promotions.schemas import PromotionIn

STORE = uuid.uuid4()
MEMBER = uuid.uuid4()
BREAD, MILK, TEA, COKE = (uuid.uuid4() for _ in range(4))
DRINKS = uuid.uuid4()
# A Sunday, 19:30 in the store's local time.
LOCAL = datetime(2026, 3, 1, 19, 30)
MOMENT = datetime(2026, 3, 1, 11, 30, tzinfo=UTC)


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def context(**overrides: Any) -> engine.Context:
    values: dict[str, Any] = {
        "currency": "CNY",
        "store_id": STORE,
        "local_time": LOCAL,
        "moment": MOMENT,
        "member_id": MEMBER,
        "member_level": "gold",
        **overrides,
    }
    return engine.Context(**values)


def line(product: uuid.UUID, quantity: int, unit_price: int, **extra: Any) -> engine.LineInput:
    category = DRINKS if product in (TEA, COKE) else None
    return engine.LineInput(product, category, quantity, unit_price, **extra)


def promotion(rule: dict[str, Any], **definition: Any) -> engine.PromotionInput:
    body = PromotionIn.model_validate({"name": rule["kind"], "rule": rule, **definition})
    return engine.PromotionInput(uuid.uuid4(), uuid.uuid4(), body)


def coupon(kind: str, **terms: Any) -> engine.CouponInput:
    values: dict[str, Any] = {
        "coupon_id": uuid.uuid4(),
        "member_id": MEMBER,
        "template_id": uuid.uuid4(),
        "code": f"C-{kind}",
        "kind": kind,
        "valid_from": MOMENT - timedelta(days=1),
        "valid_until": MOMENT + timedelta(days=1),
        **terms,
    }
    return engine.CouponInput(CouponIssued.model_validate(values))


def discounts(result: engine.Result) -> list[int]:
    return [priced.discount for priced in result.lines]


def test_percentage_discount_rounds_half_up_per_line() -> None:
    # 20% of 9.99 is 1.998 -> 2.00; 20% of 2.50 is 0.50; bread is not a drink.
    rule = {"kind": "discount", "category_ids": [str(DRINKS)], "percent_off_bp": 2000}
    result = engine.price(
        [line(TEA, 3, 333), line(COKE, 1, 250), line(BREAD, 1, 600)],
        [promotion(rule)],
        [],
        context(),
    )
    assert discounts(result) == [200, 50, 0]
    assert result.total == 999 + 250 + 600 - 250
    assert result.promotions[0].amount == 250
    assert result.lines[0].adjustments[0].source == "promotion"


def test_fixed_discount_per_unit_never_below_zero() -> None:
    rule = {"kind": "discount", "product_ids": [str(TEA), str(COKE)], "amount_off": cny(150)}
    result = engine.price([line(TEA, 2, 400), line(COKE, 1, 100)], [promotion(rule)], [], context())
    assert discounts(result) == [300, 100]


def test_full_reduction_takes_the_best_tier_and_spreads_it_without_losing_a_fen() -> None:
    rule = {
        "kind": "full_reduction",
        "tiers": [
            {"threshold": cny(5000), "amount_off": cny(1000)},
            {"threshold": cny(10000), "amount_off": cny(2500)},
        ],
    }
    result = engine.price(
        [line(BREAD, 1, 3000), line(MILK, 1, 2001)], [promotion(rule)], [], context()
    )
    # 1000 * 3000/5001 = 599.88 and 1000 * 2001/5001 = 400.12: the spare fen goes to the
    # larger remainder.
    assert discounts(result) == [600, 400]
    below = engine.price([line(BREAD, 1, 4999)], [promotion(rule)], [], context())
    assert discounts(below) == [0]
    assert below.rejected_promotions[0].reason == "threshold_not_met"


def test_combo_sells_complete_sets_at_the_fixed_price() -> None:
    rule = {
        "kind": "combo",
        "items": [
            {"product_id": str(BREAD), "quantity": 1},
            {"product_id": str(MILK), "quantity": 1},
        ],
        "price": cny(1000),
    }
    # Two breads and one milk: one set (6.00 + 5.00 for 10.00); the saving of 1.00 is spread
    # 600:500 -> 54.5 and 45.5, the spare fen to bread (earlier on a tie).
    result = engine.price(
        [line(BREAD, 2, 600), line(MILK, 1, 500)], [promotion(rule)], [], context()
    )
    assert discounts(result) == [55, 45]
    assert result.total == 1200 + 500 - 100
    alone = engine.price([line(BREAD, 2, 600)], [promotion(rule)], [], context())
    assert alone.rejected_promotions[0].reason == "combo_incomplete"


def test_member_price_by_level() -> None:
    rule = {"kind": "member_price", "level_percent_off_bp": {"gold": 500, "silver": 200}}
    lines = [line(BREAD, 1, 1999), line(MILK, 3, 333)]
    # 5% of 19.99 = 0.9995 -> 1.00; 5% of 9.99 = 0.4995 -> 0.50.
    assert discounts(engine.price(lines, [promotion(rule)], [], context())) == [100, 50]
    silver = engine.price(lines, [promotion(rule)], [], context(member_level="silver"))
    assert discounts(silver) == [40, 20]
    bronze = engine.price(lines, [promotion(rule)], [], context(member_level="bronze"))
    assert discounts(bronze) == [0, 0]
    assert bronze.rejected_promotions[0].reason == "member_level"
    anonymous = engine.price(lines, [promotion(rule)], [], context(member_id=None))
    assert anonymous.rejected_promotions[0].reason == "member_required"


def test_member_prices_by_level_take_the_larger_saving() -> None:
    rule = {
        "kind": "member_price",
        "unit_prices": {str(TEA): cny(800), str(COKE): cny(300)},
        "levels": ["gold", "silver"],
        "level_percent_off_bp": {"gold": 500},
    }
    lines = [line(TEA, 2, 1000), line(BREAD, 1, 1999), line(COKE, 1, 250)]
    # Gold: tea at 8.00 saves 4.00 (more than 5%); bread 5%; coke's member price is above its
    # price, so 5% of 2.50 = 0.125 -> 0.13.
    assert discounts(engine.price(lines, [promotion(rule)], [], context())) == [400, 100, 13]
    silver = engine.price(lines, [promotion(rule)], [], context(member_level="silver"))
    assert discounts(silver) == [400, 0, 0]
    bronze = engine.price(lines, [promotion(rule)], [], context(member_level="bronze"))
    assert discounts(bronze) == [0, 0, 0]
    assert bronze.rejected_promotions[0].reason == "member_level"


def test_buy_n_get_m_frees_the_cheapest_units() -> None:
    rule = {"kind": "buy_n_get_m", "category_ids": [str(DRINKS)], "buy": 2, "get": 1}
    # Six drinks: two groups of three, the two cheapest units free (one coke, one tea).
    result = engine.price([line(TEA, 5, 300), line(COKE, 1, 200)], [promotion(rule)], [], context())
    assert discounts(result) == [300, 200]
    half = {**rule, "get_percent_off_bp": 5000}
    result = engine.price([line(TEA, 4, 301)], [promotion(half)], [], context())
    # One unit half off: 150.5 -> 151.
    assert discounts(result) == [151]


def test_schedule_is_store_local_days_hours_and_dates() -> None:
    rule = {"kind": "discount", "product_ids": [str(TEA)], "percent_off_bp": 1000}
    evening = promotion(rule, time_from="18:00", time_until="20:00", days_of_week=[6, 7])
    lines = [line(TEA, 1, 1000)]
    assert discounts(engine.price(lines, [evening], [], context())) == [100]
    at_eight = context(local_time=datetime(2026, 3, 1, 20, 0))
    assert discounts(engine.price(lines, [evening], [], at_eight)) == [0]
    monday = context(local_time=datetime(2026, 3, 2, 19, 0))
    result = engine.price(lines, [evening], [], monday)
    assert result.rejected_promotions[0].reason == "outside_schedule"
    overnight = promotion(rule, time_from="22:00", time_until="02:00")
    late = context(local_time=datetime(2026, 3, 1, 1, 30))
    assert discounts(engine.price(lines, [overnight], [], late)) == [100]
    ended = promotion(rule, starts_on="2026-02-01", ends_on="2026-02-28")
    assert engine.price(lines, [ended], [], context()).rejected_promotions[0].reason == "ended"
    elsewhere = promotion(rule, store_ids=[str(uuid.uuid4())])
    assert discounts(engine.price(lines, [elsewhere], [], context())) == [0]


def test_stages_apply_in_order_whatever_the_input_order() -> None:
    item = promotion(
        {"kind": "discount", "product_ids": [str(TEA)], "percent_off_bp": 1000}, stackable=True
    )
    reduction = promotion(
        {"kind": "full_reduction", "tiers": [{"threshold": cny(1800), "amount_off": cny(300)}]},
        stackable=True,
    )
    lines = [line(TEA, 1, 1000), line(BREAD, 1, 1000)]
    # The item discount first (tea 10.00 -> 9.00), then 满减 on 19.00 reaches 18.00.
    for order in ([item, reduction], [reduction, item]):
        result = engine.price(lines, order, [], context())
        assert [a.kind for a in result.promotions] == ["discount", "full_reduction"]
        # 300 spread 900:1000 -> 142.1 and 157.9 -> 142 and 158.
        assert discounts(result) == [100 + 142, 158]


def test_a_non_stackable_promotion_shares_no_line() -> None:
    exclusive = promotion(
        {"kind": "discount", "product_ids": [str(TEA)], "percent_off_bp": 2000}, priority=10
    )
    stackable = promotion(
        {"kind": "discount", "product_ids": [str(TEA)], "percent_off_bp": 1000}, stackable=True
    )
    reduction = promotion(
        {"kind": "full_reduction", "tiers": [{"threshold": cny(500), "amount_off": cny(100)}]}
    )
    result = engine.price(
        [line(TEA, 1, 1000), line(BREAD, 1, 1000)], [stackable, reduction, exclusive], [], context()
    )
    # The exclusive discount takes tea alone; the stackable one finds no line; the
    # non-stackable 满减 counts only bread, which nothing touched.
    assert discounts(result) == [200, 100]
    reasons = {r.id: r.reason for r in result.rejected_promotions}
    assert reasons == {stackable.promotion_id: "no_eligible_lines"}
    # Higher priority first within a stage: the stackable one at priority 20 comes first,
    # and then the exclusive one skips the line it touched.
    first = promotion(
        {"kind": "discount", "product_ids": [str(TEA)], "percent_off_bp": 1000},
        stackable=True,
        priority=20,
    )
    result = engine.price([line(TEA, 1, 1000)], [exclusive, first], [], context())
    assert discounts(result) == [100]


def test_manual_lines_take_no_promotion() -> None:
    rule = {"kind": "discount", "product_ids": [str(TEA)], "percent_off_bp": 5000}
    result = engine.price(
        [line(TEA, 1, 1000, manual_discount=100, manual=True), line(TEA, 1, 1000)],
        [promotion(rule)],
        [],
        context(),
    )
    assert discounts(result) == [100, 500]
    assert result.lines[0].adjustments[0].source == "manual"


def test_coupons_after_promotions_with_their_terms() -> None:
    lines = [line(TEA, 1, 1000), line(BREAD, 1, 2000)]
    item = promotion({"kind": "discount", "product_ids": [str(TEA)], "percent_off_bp": 1000})
    full = coupon("full_reduction", threshold=cny(2900), amount_off=cny(500))
    result = engine.price(lines, [item], [full], context())
    # 2900 after the promotion reaches the threshold; 500 spread 900:2000 -> 155.17, 344.83.
    assert discounts(result) == [100 + 155, 345]
    assert result.coupons == {full.terms.coupon_id: 500}

    percent = coupon("percentage", percent_off_bp=1500, cap=cny(400))
    capped = engine.price(lines, [], [percent], context())
    assert sum(discounts(capped)) == 400
    small = engine.price([line(TEA, 1, 999)], [], [percent], context())
    assert discounts(small) == [150]  # 149.85 -> 150, under the cap

    tea_only = coupon("no_threshold", amount_off=cny(5000), product_ids=[str(TEA)])
    assert discounts(engine.price(lines, [], [tea_only], context())) == [1000, 0]

    product = coupon("product", product_ids=[str(BREAD)])
    assert discounts(engine.price(lines, [], [product], context())) == [0, 2000]
    two_off = coupon("product", product_ids=[str(TEA)], amount_off=cny(200))
    assert discounts(engine.price([line(TEA, 3, 1000)], [], [two_off], context())) == [200]


def test_coupon_refusals_carry_their_reason() -> None:
    lines = [line(TEA, 1, 1000)]

    def reason(item: engine.CouponInput, **ctx: Any) -> str:
        result = engine.price(lines, [], [item], context(**ctx))
        assert discounts(result) == [0]
        return result.rejected_coupons[0].reason

    assert reason(coupon("full_reduction", threshold=cny(1001), amount_off=cny(100))) == (
        "threshold_not_met"
    )
    assert reason(coupon("no_threshold", amount_off=cny(100), member_id=uuid.uuid4())) == (
        "coupon_not_for_member"
    )
    assert reason(coupon("no_threshold", amount_off=cny(100)), member_id=None) == "member_required"
    expired = coupon("no_threshold", amount_off=cny(100), valid_until=MOMENT - timedelta(seconds=1))
    assert reason(expired) == "coupon_expired"
    early = coupon("no_threshold", amount_off=cny(100), valid_from=MOMENT + timedelta(hours=1))
    assert reason(early) == "coupon_not_yet_valid"
    elsewhere = coupon("no_threshold", amount_off=cny(100), store_ids=[str(uuid.uuid4())])
    assert reason(elsewhere) == "coupon_wrong_store"
    assert reason(coupon("product", product_ids=[str(BREAD)])) == "no_eligible_lines"
    usd = coupon("no_threshold", amount_off={"amount": 100, "currency": "USD"})
    assert reason(usd) == "currency_mismatch"
    held = engine.CouponInput(coupon("no_threshold", amount_off=cny(100)).terms, "coupon_used")
    assert reason(held) == "coupon_used"


def test_every_discount_adds_up_to_the_order_to_the_fen() -> None:
    promotions = [
        promotion({"kind": "discount", "category_ids": [str(DRINKS)], "percent_off_bp": 1234}),
        promotion(
            {"kind": "full_reduction", "tiers": [{"threshold": cny(1000), "amount_off": cny(333)}]},
            stackable=True,
        ),
    ]
    lines = [line(TEA, 7, 129), line(COKE, 3, 77), line(BREAD, 11, 91), line(MILK, 1, 3)]
    result = engine.price(lines, promotions, [coupon("percentage", percent_off_bp=777)], context())
    total_adjusted = sum(a.amount for p in result.lines for a in p.adjustments)
    assert total_adjusted == result.discount_total
    assert sum(a.amount for a in result.promotions) + sum(result.coupons.values()) == total_adjusted
    assert all(p.net >= 0 for p in result.lines)
    assert Money.of(result.total, "CNY") == Money.of(result.subtotal - result.discount_total, "CNY")
