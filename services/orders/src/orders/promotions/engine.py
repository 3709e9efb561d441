"""The pricing engine: lines, promotions and coupons in, discounts per line out.

Pure: no database, no clock. Everything it depends on is an argument, so an order's stored
inputs give back the same result (placing and quoting call it the same way; recomputing an
order calls it with what the order stored).

Order of application (deterministic; ties broken by promotion id):

1. Manual discounts and price overrides (``orders:discount``). A line carrying one takes no
   promotion (coupons still count it).
2. Promotions by stage, and within a stage by ``priority`` (highest first):
   combo (stage 1), buy-N-get-M (stage 2), member price and timed discounts (stage 3),
   full reduction 满减 (stage 4). Each works on what the lines are worth after the stages
   before it.
3. Coupons, in the order the request names them, on what the lines are worth after every
   promotion.

Exclusivity: a promotion that is not stackable never shares a line with another promotion. A
line touched by a non-stackable promotion takes no later promotion; a non-stackable promotion
skips lines an earlier promotion touched. Stackable promotions share lines with each other.

Rounding, all in integer minor units:

* a percentage (timed discount, member price, buy-N-get-M's "get" units) is taken per line,
  half-up (``Money.percent_bps``);
* an order-level amount (full reduction, a coupon) is spread over its eligible lines in
  proportion to what they are worth by largest remainder (``Money.allocate``), so the lines'
  shares add up to the amount exactly;
* a percentage coupon is taken half-up on its eligible subtotal, capped, then spread.

No line ever goes below zero: every discount is capped by what the line is still worth.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from contracts.events.members import CouponIssued
from contracts.money import Money
from orders.promotions.schemas import (
    BuyNGetMRule,
    ComboRule,
    DiscountRule,
    FullReductionRule,
    MemberPriceRule,
    PromotionIn,
    RuleKind,
)

Source = Literal["manual", "promotion", "coupon"]

STAGES: dict[str, int] = {
    "combo": 1,
    "buy_n_get_m": 2,
    "member_price": 3,
    "discount": 3,
    "full_reduction": 4,
}


@dataclass(frozen=True, slots=True)
class LineInput:
    product_id: uuid.UUID
    category_id: uuid.UUID | None
    quantity: int
    unit_price: int
    manual_discount: int = 0
    #: A price override or manual discount: the line takes no promotion.
    manual: bool = False


@dataclass(frozen=True, slots=True)
class PromotionInput:
    promotion_id: uuid.UUID
    version_id: uuid.UUID
    definition: PromotionIn


@dataclass(frozen=True, slots=True)
class CouponInput:
    terms: CouponIssued
    #: Why the coupon cannot be used whatever the order (reserved elsewhere, used, voided).
    unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    currency: str
    store_id: uuid.UUID
    #: The order's moment in the store's local time (naive): the promotions' schedule.
    local_time: datetime
    #: The order's moment (aware): the coupons' validity window.
    moment: datetime
    member_id: uuid.UUID | None = None
    member_level: str | None = None


@dataclass(frozen=True, slots=True)
class Adjustment:
    source: Source
    id: uuid.UUID | None
    version_id: uuid.UUID | None
    name: str
    amount: int


@dataclass(slots=True)
class PricedLine:
    input: LineInput
    adjustments: list[Adjustment] = field(default_factory=list)
    touched: bool = False
    exclusive: bool = False

    @property
    def gross(self) -> int:
        return self.input.unit_price * self.input.quantity

    @property
    def discount(self) -> int:
        return sum(a.amount for a in self.adjustments)

    @property
    def net(self) -> int:
        return self.gross - self.discount


@dataclass(frozen=True, slots=True)
class Applied:
    promotion_id: uuid.UUID
    version_id: uuid.UUID
    name: str
    kind: RuleKind
    amount: int


@dataclass(frozen=True, slots=True)
class Rejected:
    id: uuid.UUID
    version_id: uuid.UUID | None
    name: str
    reason: str


@dataclass(slots=True)
class Result:
    currency: str
    lines: list[PricedLine]
    promotions: list[Applied]
    rejected_promotions: list[Rejected]
    coupons: dict[uuid.UUID, int]
    rejected_coupons: list[Rejected]

    @property
    def subtotal(self) -> int:
        return sum(line.gross for line in self.lines)

    @property
    def discount_total(self) -> int:
        return sum(line.discount for line in self.lines)

    @property
    def total(self) -> int:
        return self.subtotal - self.discount_total


def _percent(amount: int, bp: int, currency: str) -> int:
    return Money.of(amount, currency).percent_bps(bp).amount


def _allocate(amount: int, lines: Sequence[PricedLine], currency: str) -> list[int]:
    """Spread ``amount`` (at most the lines' worth) over ``lines`` by what each is worth."""
    weights = [line.net for line in lines]
    if amount <= 0 or sum(weights) <= 0:
        return [0] * len(lines)
    return [m.amount for m in Money.of(amount, currency).allocate(weights)]


def schedule_problem(definition: PromotionIn, context: Context) -> str | None:
    """Why the promotion is not on at the order's moment and store, or ``None``."""
    if not definition.active:
        return "inactive"
    if definition.store_ids is not None and context.store_id not in definition.store_ids:
        return "other_store"
    local = context.local_time
    if definition.starts_on is not None and local.date() < definition.starts_on:
        return "not_started"
    if definition.ends_on is not None and local.date() > definition.ends_on:
        return "ended"
    if definition.days_of_week is not None and local.isoweekday() not in definition.days_of_week:
        return "outside_schedule"
    if definition.time_from is not None and definition.time_until is not None:
        now, start, end = local.time(), definition.time_from, definition.time_until
        inside = start <= now < end if start < end else (now >= start or now < end)
        if not inside:
            return "outside_schedule"
    if any(c != context.currency for c in definition.currencies()):
        return "currency_mismatch"
    return None


def _combo(rule: ComboRule, lines: list[PricedLine], currency: str) -> dict[int, int]:
    """As many complete sets as the lines hold; the saving spread over the units consumed."""
    available: dict[uuid.UUID, int] = {}
    for line in lines:
        pid = line.input.product_id
        available[pid] = available.get(pid, 0) + line.input.quantity
    sets = min(available.get(item.product_id, 0) // item.quantity for item in rule.items)
    if sets == 0:
        return {}
    consumed: list[tuple[int, int]] = []  # (index into lines, worth of the units consumed)
    for item in rule.items:
        wanted = sets * item.quantity
        for i, line in enumerate(lines):
            if wanted == 0:
                break
            if line.input.product_id != item.product_id:
                continue
            units = min(wanted, line.input.quantity)
            wanted -= units
            consumed.append((i, min(units * line.input.unit_price, line.net)))
    worth = sum(value for _, value in consumed)
    saving = worth - sets * rule.price.amount
    if saving <= 0:
        return {}
    shares = Money.of(saving, currency).allocate([value for _, value in consumed])
    result: dict[int, int] = {}
    for (i, _), share in zip(consumed, shares, strict=True):
        result[i] = result.get(i, 0) + share.amount
    return result


def _buy_n_get_m(rule: BuyNGetMRule, lines: list[PricedLine], currency: str) -> dict[int, int]:
    """Of every ``buy + get`` units, the ``get`` cheapest: counted from the cheapest line up."""
    units = sum(line.input.quantity for line in lines)
    free = units // (rule.buy + rule.get) * rule.get
    result: dict[int, int] = {}
    order = sorted(range(len(lines)), key=lambda i: (lines[i].input.unit_price, i))
    for i in order:
        if free == 0:
            break
        line = lines[i]
        take = min(free, line.input.quantity)
        free -= take
        off = _percent(take * line.input.unit_price, rule.get_percent_off_bp, currency)
        result[i] = min(off, line.net)
    return result


def _per_line(
    lines: list[PricedLine], currency: str, *, bp: int | None, per_unit: int | None
) -> dict[int, int]:
    result: dict[int, int] = {}
    for i, line in enumerate(lines):
        off = (
            _percent(line.net, bp, currency)
            if bp is not None
            else (per_unit or 0) * line.input.quantity
        )
        result[i] = min(off, line.net)
    return result


def _member_price(
    rule: MemberPriceRule, lines: list[PricedLine], context: Context
) -> tuple[dict[int, int], str | None]:
    """Per line the larger of the member price's saving and the level's percentage."""
    level = context.member_level
    bp = rule.level_percent_off_bp.get(level) if level is not None else None
    result: dict[int, int] = {}
    for i, line in enumerate(lines):
        off = _percent(line.net, bp, context.currency) if bp is not None else 0
        member_price = rule.price_for(line.input.product_id, level)
        if member_price is not None:
            saving = max(line.input.unit_price - member_price.amount, 0) * line.input.quantity
            off = max(off, saving)
        result[i] = min(off, line.net)
    return result, "member_level"


def _full_reduction(
    rule: FullReductionRule, lines: list[PricedLine], currency: str
) -> tuple[dict[int, int], str | None]:
    eligible = sum(line.net for line in lines)
    reached = [t for t in rule.tiers if t.threshold.amount <= eligible]
    if not reached:
        return {}, "threshold_not_met"
    tier = max(reached, key=lambda t: t.threshold.amount)
    shares = _allocate(min(tier.amount_off.amount, eligible), lines, currency)
    return dict(enumerate(shares)), None


def _apply_promotion(
    promotion: PromotionInput, lines: list[PricedLine], context: Context
) -> tuple[dict[int, int], str | None]:
    """Discounts by index into ``lines`` (the candidate lines), or why none."""
    rule = promotion.definition.rule
    currency = context.currency
    if isinstance(rule, ComboRule):
        return _combo(rule, lines, currency), "combo_incomplete"
    if isinstance(rule, BuyNGetMRule):
        return _buy_n_get_m(rule, lines, currency), "not_enough_units"
    if isinstance(rule, MemberPriceRule):
        if context.member_id is None:
            return {}, "member_required"
        return _member_price(rule, lines, context)
    if isinstance(rule, DiscountRule):
        per_unit = rule.amount_off.amount if rule.amount_off is not None else None
        return _per_line(lines, currency, bp=rule.percent_off_bp, per_unit=per_unit), None
    assert isinstance(rule, FullReductionRule)
    return _full_reduction(rule, lines, currency)


def _promotion_order(promotion: PromotionInput) -> tuple[int, int, str]:
    definition = promotion.definition
    return (STAGES[definition.rule.kind], -definition.priority, str(promotion.promotion_id))


def _coupon_discount(
    coupon: CouponInput, lines: list[PricedLine], context: Context
) -> tuple[dict[int, int], str | None]:
    terms = coupon.terms
    if coupon.unavailable is not None:
        return {}, coupon.unavailable
    if context.member_id is None:
        return {}, "member_required"
    if terms.member_id != context.member_id:
        return {}, "coupon_not_for_member"
    if context.moment < terms.valid_from:
        return {}, "coupon_not_yet_valid"
    if context.moment > terms.valid_until:
        return {}, "coupon_expired"
    if terms.store_ids is not None and context.store_id not in terms.store_ids:
        return {}, "coupon_wrong_store"
    amounts = [m for m in (terms.threshold, terms.amount_off, terms.cap) if m is not None]
    if any(m.currency != context.currency for m in amounts):
        return {}, "currency_mismatch"
    currency = context.currency
    indexed = list(enumerate(lines))
    if terms.kind == "product":
        candidates = [
            (i, line)
            for i, line in indexed
            if line.input.product_id in terms.product_ids and line.net > 0
        ]
        if not candidates:
            return {}, "no_eligible_lines"
        # The dearest unit: what a customer expects a product coupon to take.
        i, line = max(candidates, key=lambda c: (c[1].input.unit_price, -c[0]))
        unit = line.input.unit_price
        off = min(terms.amount_off.amount if terms.amount_off else unit, unit, line.net)
        return {i: off}, None
    if terms.product_ids:
        indexed = [(i, line) for i, line in indexed if line.input.product_id in terms.product_ids]
    eligible_lines = [line for _, line in indexed]
    eligible = sum(line.net for line in eligible_lines)
    if eligible <= 0:
        return {}, "no_eligible_lines"
    if terms.threshold is not None and eligible < terms.threshold.amount:
        return {}, "threshold_not_met"
    if terms.kind == "percentage":
        off = _percent(eligible, terms.percent_off_bp or 0, currency)
        if terms.cap is not None:
            off = min(off, terms.cap.amount)
    else:
        off = terms.amount_off.amount if terms.amount_off is not None else 0
    off = min(off, eligible)
    if off <= 0:
        return {}, "no_saving"
    shares = _allocate(off, eligible_lines, currency)
    return {i: share for (i, _), share in zip(indexed, shares, strict=True)}, None


def price(
    lines: Sequence[LineInput],
    promotions: Sequence[PromotionInput],
    coupons: Sequence[CouponInput],
    context: Context,
) -> Result:
    """Price ``lines`` with ``promotions`` (any order: the engine sorts them) and ``coupons``
    (in the order given). See the module's docstring for the rules."""
    priced = [PricedLine(line) for line in lines]
    for line in priced:
        if line.input.manual_discount:
            line.adjustments.append(
                Adjustment("manual", None, None, "Manual discount", line.input.manual_discount)
            )
    result = Result(context.currency, priced, [], [], {}, [])
    for promotion in sorted(promotions, key=_promotion_order):
        definition = promotion.definition
        problem = schedule_problem(definition, context)
        if problem is None:
            candidates = [
                line
                for line in priced
                if not line.input.manual
                and not line.exclusive
                and (definition.stackable or not line.touched)
                and line.net > 0
                and definition.rule.targets(line.input.product_id, line.input.category_id)
            ]
            discounts, reason = (
                _apply_promotion(promotion, candidates, context)
                if candidates
                else ({}, "no_eligible_lines")
            )
            total = sum(discounts.values())
            if total > 0:
                for i, amount in discounts.items():
                    if amount <= 0:
                        continue
                    line = candidates[i]
                    line.adjustments.append(
                        Adjustment(
                            "promotion",
                            promotion.promotion_id,
                            promotion.version_id,
                            definition.name,
                            amount,
                        )
                    )
                    line.touched = True
                    line.exclusive = line.exclusive or not definition.stackable
                result.promotions.append(
                    Applied(
                        promotion.promotion_id,
                        promotion.version_id,
                        definition.name,
                        definition.rule.kind,
                        total,
                    )
                )
                continue
            problem = reason or "no_saving"
        result.rejected_promotions.append(
            Rejected(promotion.promotion_id, promotion.version_id, definition.name, problem)
        )
    for coupon in coupons:
        discounts, reason = _coupon_discount(coupon, priced, context)
        total = sum(discounts.values())
        if reason is not None or total <= 0:
            result.rejected_coupons.append(
                Rejected(coupon.terms.coupon_id, None, coupon.terms.code, reason or "no_saving")
            )
            continue
        for i, amount in discounts.items():
            if amount > 0:
                priced[i].adjustments.append(
                    Adjustment("coupon", coupon.terms.coupon_id, None, coupon.terms.code, amount)
                )
        result.coupons[coupon.terms.coupon_id] = total
    return result
