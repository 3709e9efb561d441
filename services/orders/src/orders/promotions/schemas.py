"""Request and response models of promotions and of the pricing they give.

A promotion's definition (``PromotionIn``) is stored as it was sent, one row per version: the
pricing engine reads the same model back, so an order priced by version 3 is priced by exactly
what version 3 said."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from contracts.money import Money
from orders.order.schemas import AdjustmentOut, Printable

MAX_TARGETS = 200
MAX_TIERS = 10
MAX_COMBO_ITEMS = 20
MAX_LEVELS = 20
#: Percentages are basis points: 2000 is 20% off.
PercentBp = Annotated[int, Field(gt=0, le=10_000)]
Targets = Annotated[list[uuid.UUID], Field(max_length=MAX_TARGETS)]


def _positive(value: Money) -> Money:
    if not value.is_positive:
        raise PydanticCustomError("amount_not_positive", "must be above zero")
    return value


def _distinct(values: list[uuid.UUID]) -> list[uuid.UUID]:
    if len(set(values)) != len(values):
        raise PydanticCustomError("duplicate_ids", "must not repeat an id")
    return values


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_ids: Targets = []
    category_ids: Targets = []

    @field_validator("product_ids", "category_ids")
    @classmethod
    def _no_repeats(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        return _distinct(value)

    def targets(self, product_id: uuid.UUID, category_id: uuid.UUID | None) -> bool:
        """Empty targets mean every product."""
        if not self.product_ids and not self.category_ids:
            return True
        return product_id in self.product_ids or (
            category_id is not None and category_id in self.category_ids
        )


class DiscountRule(_Rule):
    """A percentage off each targeted line, or a fixed amount off each targeted unit."""

    kind: Literal["discount"]
    percent_off_bp: PercentBp | None = None
    amount_off: Money | None = Field(default=None, description="Off each unit.")

    @model_validator(mode="after")
    def _one_of(self) -> DiscountRule:
        if (self.percent_off_bp is None) == (self.amount_off is None):
            raise PydanticCustomError(
                "percent_or_amount", "give exactly one of percent_off_bp and amount_off"
            )
        if self.amount_off is not None:
            _positive(self.amount_off)
        if not self.product_ids and not self.category_ids:
            raise PydanticCustomError(
                "targets_required", "a discount names its products or categories"
            )
        return self


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: Money
    amount_off: Money

    @model_validator(mode="after")
    def _sane(self) -> Tier:
        _positive(self.threshold)
        _positive(self.amount_off)
        if self.amount_off.currency != self.threshold.currency:
            raise PydanticCustomError("currency_mismatch", "tiers must share one currency")
        if self.amount_off > self.threshold:
            raise PydanticCustomError("saving_above_threshold", "cannot save more than is spent")
        return self


class FullReductionRule(_Rule):
    """满减: the highest tier whose threshold the targeted lines reach, once per order."""

    kind: Literal["full_reduction"]
    tiers: Annotated[list[Tier], Field(min_length=1, max_length=MAX_TIERS)]

    @model_validator(mode="after")
    def _ordered(self) -> FullReductionRule:
        if len({t.threshold.currency for t in self.tiers}) > 1:
            raise PydanticCustomError("currency_mismatch", "tiers must share one currency")
        if len({t.threshold.amount for t in self.tiers}) != len(self.tiers):
            raise PydanticCustomError("duplicate_tiers", "two tiers have the same threshold")
        return self


class ComboItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Annotated[int, Field(gt=0, le=100)]


class ComboRule(BaseModel):
    """A set of products with quantities sold together at ``price`` (as many sets as the
    order holds)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["combo"]
    items: Annotated[list[ComboItem], Field(min_length=1, max_length=MAX_COMBO_ITEMS)]
    price: Money

    @model_validator(mode="after")
    def _sane(self) -> ComboRule:
        _positive(self.price)
        if len({i.product_id for i in self.items}) != len(self.items):
            raise PydanticCustomError("duplicate_ids", "a product appears twice in the combo")
        if sum(i.quantity for i in self.items) < 2:
            raise PydanticCustomError("combo_too_small", "a combo holds at least two units")
        return self

    def targets(self, product_id: uuid.UUID, category_id: uuid.UUID | None) -> bool:
        return any(i.product_id == product_id for i in self.items)


class MemberPriceRule(_Rule):
    """Member prices and level discounts, by the member's level (from the members replica).

    ``unit_prices``: a member's price per unit of a product, for members at one of ``levels``
    (every member when absent). ``level_percent_off_bp``: a percentage off the targeted lines
    by level. A line both could discount takes the larger discount."""

    kind: Literal["member_price"]
    level_percent_off_bp: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=50)], PercentBp],
        Field(max_length=MAX_LEVELS),
    ] = {}
    unit_prices: Annotated[dict[uuid.UUID, Money], Field(max_length=MAX_TARGETS)] = {}
    levels: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=50)]],
            Field(min_length=1, max_length=MAX_LEVELS),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _something(self) -> MemberPriceRule:
        if not self.level_percent_off_bp and not self.unit_prices:
            raise PydanticCustomError(
                "member_terms_required", "give level_percent_off_bp or unit_prices"
            )
        for price in self.unit_prices.values():
            if price.is_negative:
                raise PydanticCustomError("negative_amount", "a member price is not negative")
        if len({p.currency for p in self.unit_prices.values()}) > 1:
            raise PydanticCustomError("currency_mismatch", "member prices share one currency")
        return self

    def price_for(self, product_id: uuid.UUID, level: str | None) -> Money | None:
        if self.levels is not None and level not in self.levels:
            return None
        return self.unit_prices.get(product_id)


class BuyNGetMRule(_Rule):
    """Of every ``buy + get`` targeted units, the ``get`` cheapest are ``get_percent_off_bp``
    off (free by default)."""

    kind: Literal["buy_n_get_m"]
    buy: Annotated[int, Field(gt=0, le=100)]
    get: Annotated[int, Field(gt=0, le=100)]
    get_percent_off_bp: PercentBp = 10_000

    @model_validator(mode="after")
    def _targets(self) -> BuyNGetMRule:
        if not self.product_ids and not self.category_ids:
            raise PydanticCustomError(
                "targets_required", "buy-N-get-M names its products or categories"
            )
        return self


Rule = Annotated[
    DiscountRule | FullReductionRule | ComboRule | MemberPriceRule | BuyNGetMRule,
    Field(discriminator="kind"),
]
RuleKind = Literal["discount", "full_reduction", "combo", "member_price", "buy_n_get_m"]


class PromotionIn(BaseModel):
    """A promotion's definition; every edit stores a new version of it.

    The schedule is in the store's local time: ``starts_on``..``ends_on`` inclusive,
    ``days_of_week`` ISO (1 Monday .. 7 Sunday), ``time_from``..``time_until`` half-open (an
    until before from crosses midnight). ``store_ids`` absent means every store (HQ only)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100), Printable]
    rule: Rule
    store_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_TARGETS)] | None = None
    starts_on: date | None = None
    ends_on: date | None = None
    days_of_week: (
        Annotated[list[Annotated[int, Field(ge=1, le=7)]], Field(min_length=1, max_length=7)] | None
    ) = None
    time_from: time | None = None
    time_until: time | None = None
    stackable: bool = Field(default=False, description="May share a line with other promotions.")
    priority: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=0, description="Higher first within the same stage."
    )
    active: bool = True

    @field_validator("store_ids")
    @classmethod
    def _stores_distinct(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        return None if value is None else _distinct(value)

    @model_validator(mode="after")
    def _schedule(self) -> PromotionIn:
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise PydanticCustomError("date_range", "ends_on is before starts_on")
        if (self.time_from is None) != (self.time_until is None):
            raise PydanticCustomError("time_range", "give both time_from and time_until")
        if self.time_from is not None and self.time_from == self.time_until:
            raise PydanticCustomError("time_range", "time_from equals time_until")
        for t in (self.time_from, self.time_until):
            if t is not None and t.tzinfo is not None:
                raise PydanticCustomError("time_range", "times are store-local, without offset")
        return self

    def currencies(self) -> set[str]:
        rule = self.rule
        if isinstance(rule, DiscountRule):
            return {rule.amount_off.currency} if rule.amount_off else set()
        if isinstance(rule, FullReductionRule):
            return {t.threshold.currency for t in rule.tiers}
        if isinstance(rule, ComboRule):
            return {rule.price.currency}
        if isinstance(rule, MemberPriceRule):
            return {p.currency for p in rule.unit_prices.values()}
        return set()


class PromotionUpdate(PromotionIn):
    version: int = Field(ge=1, description="The version being replaced (optimistic check).")


class PromotionOut(PromotionIn):
    id: uuid.UUID
    version: int
    version_id: uuid.UUID
    created_at: datetime = Field(description="When this version was made.")


class AppliedPromotionOut(BaseModel):
    promotion_id: uuid.UUID
    version_id: uuid.UUID
    name: str
    kind: RuleKind
    amount: Money


class RejectedPromotionOut(BaseModel):
    promotion_id: uuid.UUID
    version_id: uuid.UUID
    name: str
    reason: str


class AppliedCouponOut(BaseModel):
    coupon_id: uuid.UUID
    amount: Money


class RejectedCouponOut(BaseModel):
    coupon_id: uuid.UUID
    reason: str


class QuoteLineOut(BaseModel):
    product_id: uuid.UUID
    name: str
    quantity: int
    unit_price: Money
    subtotal: Money
    discount: Money
    total: Money
    tax: Money
    adjustments: list[AdjustmentOut]


class QuoteOut(BaseModel):
    store_id: uuid.UUID
    member_id: uuid.UUID | None
    subtotal: Money
    discount_total: Money
    total: Money
    tax_total: Money
    lines: list[QuoteLineOut]
    promotions: list[AppliedPromotionOut]
    rejected_promotions: list[RejectedPromotionOut]
    coupons: list[AppliedCouponOut]
    rejected_coupons: list[RejectedCouponOut]
