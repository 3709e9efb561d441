"""Request and response bodies of the coupon endpoints, and the checks of a template's terms."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.events.members import CouponKind
from contracts.money import Money
from members.coupons.models import Coupon, CouponTemplate
from members.member.schemas import Tag
from servicekit.errors import FieldError
from servicekit.text import StorableStr

TemplateName = Annotated[StorableStr, Field(min_length=1, max_length=100)]
DEFAULT_CURRENCY = "CNY"


class TemplateCreate(BaseModel):
    """The terms (kind, amounts, products, stores, validity) are fixed once created."""

    model_config = ConfigDict(extra="forbid")

    name: TemplateName
    kind: CouponKind
    threshold: Money | None = Field(default=None, description="Spend from which it applies.")
    amount_off: Money | None = None
    percent_off_bp: int | None = Field(
        default=None, gt=0, le=10_000, strict=True, description="Basis points: 1500 = 15% off."
    )
    cap: Money | None = Field(default=None, description="At most this much off (percentage).")
    product_ids: list[uuid.UUID] = Field(default_factory=list, max_length=500)
    store_ids: list[uuid.UUID] | None = Field(
        default=None, min_length=1, max_length=5000, description="Absent: every store."
    )
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    valid_days: int | None = Field(
        default=None, ge=1, le=3650, strict=True, description="Valid N days from issue."
    )
    per_member_limit: int | None = Field(default=None, ge=1, le=1000, strict=True)
    issue_on_signup: bool = False
    issue_on_birthday: bool = False
    active: bool = True

    def currency(self) -> str:
        for money in (self.threshold, self.amount_off, self.cap):
            if money is not None:
                return money.currency
        return DEFAULT_CURRENCY

    def term_errors(self) -> list[FieldError]:
        """What makes these terms unusable, one stable code per field."""
        errors: list[FieldError] = []

        def err(field: str, code: str, message: str) -> None:
            errors.append(FieldError(field, code, message))

        def required(field: str) -> None:
            if getattr(self, field) is None:
                err(field, f"{field}_required", f"A {self.kind} coupon needs {field}.")

        def absent(*fields: str) -> None:
            for field in fields:
                if getattr(self, field) is not None:
                    err(field, "not_applicable", f"A {self.kind} coupon has no {field}.")

        if self.kind == "full_reduction":
            required("threshold")
            required("amount_off")
            absent("percent_off_bp", "cap")
        elif self.kind == "percentage":
            required("percent_off_bp")
            absent("amount_off")
        elif self.kind == "no_threshold":
            required("amount_off")
            absent("threshold", "percent_off_bp", "cap")
        else:  # product
            absent("threshold", "percent_off_bp", "cap")
            if not self.product_ids:
                err("product_ids", "product_ids_required", "A product coupon names products.")
        currency = self.currency()
        for field in ("threshold", "amount_off", "cap"):
            money: Money | None = getattr(self, field)
            if money is None:
                continue
            if money.amount <= 0:
                err(field, "amount_not_positive", "The amount must be above zero.")
            if money.currency != currency:
                err(field, "currency_mismatch", "All amounts must share one currency.")
        if (
            self.kind == "full_reduction"
            and self.threshold is not None
            and self.amount_off is not None
            and self.amount_off.currency == self.threshold.currency
            and self.amount_off.amount > self.threshold.amount
        ):
            err("amount_off", "amount_off_exceeds_threshold", "It cannot save more than spent.")
        window = (self.valid_from, self.valid_until)
        if self.valid_days is None and window == (None, None):
            err("valid_days", "validity_required", "Give valid_days or valid_from/valid_until.")
        elif self.valid_days is not None and window != (None, None):
            err("valid_days", "validity_ambiguous", "Give valid_days or a window, not both.")
        elif self.valid_days is None:
            if self.valid_from is None or self.valid_until is None:
                field = "valid_from" if self.valid_from is None else "valid_until"
                err(field, "validity_window_incomplete", "A window needs both ends.")
            elif self.valid_until <= self.valid_from:
                err("valid_until", "validity_window_empty", "The window ends before it starts.")
        return errors


class TemplateUpdate(BaseModel):
    """What may change after creation; fields left out stay."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    name: TemplateName | None = None
    per_member_limit: int | None = Field(default=None, ge=1, le=1000, strict=True)
    issue_on_signup: bool | None = None
    issue_on_birthday: bool | None = None
    active: bool | None = None


def _money(amount: int | None, currency: str) -> Money | None:
    return Money.of(amount, currency) if amount is not None else None


class TemplateOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: CouponKind
    threshold: Money | None
    amount_off: Money | None
    percent_off_bp: int | None
    cap: Money | None
    product_ids: list[uuid.UUID]
    store_ids: list[uuid.UUID] | None
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    per_member_limit: int | None
    issue_on_signup: bool
    issue_on_birthday: bool
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, t: CouponTemplate) -> TemplateOut:
        return cls(
            id=t.id,
            name=t.name,
            kind=t.kind,
            threshold=_money(t.threshold, t.currency),
            amount_off=_money(t.amount_off, t.currency),
            percent_off_bp=t.percent_off_bp,
            cap=_money(t.cap, t.currency),
            product_ids=list(t.product_ids or []),
            store_ids=list(t.store_ids) if t.store_ids is not None else None,
            valid_from=t.valid_from,
            valid_until=t.valid_until,
            valid_days=t.valid_days,
            per_member_limit=t.per_member_limit,
            issue_on_signup=t.issue_on_signup,
            issue_on_birthday=t.issue_on_birthday,
            active=t.active,
            version=t.version,
            created_at=t.created_at,
            updated_at=t.updated_at,
        )


class IssueCoupon(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: uuid.UUID


class BulkIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: Tag
    batch_key: StorableStr = Field(
        min_length=1,
        max_length=100,
        description="Names the batch: running it again with the same key issues nothing twice.",
    )


class BulkIssueOut(BaseModel):
    matched: int = Field(description="Members holding the tag.")
    issued: int = Field(description="Coupons issued by this run.")
    already_issued: int = Field(description="Members who had this batch's coupon already.")
    over_limit: int = Field(description="Members at the template's per-member limit.")


class VoidCoupon(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StorableStr = Field(min_length=1, max_length=200)


class CouponOut(BaseModel):
    id: uuid.UUID
    code: str
    template_id: uuid.UUID
    member_id: uuid.UUID
    kind: CouponKind
    state: str = Field(description="issued, reserved, redeemed or voided.")
    expired: bool = Field(description="Still issued, but past valid_until.")
    threshold: Money | None
    amount_off: Money | None
    percent_off_bp: int | None
    cap: Money | None
    product_ids: list[uuid.UUID]
    store_ids: list[uuid.UUID] | None
    valid_from: datetime
    valid_until: datetime
    source: str = Field(description="manual, bulk, signup or birthday.")
    order_id: uuid.UUID | None = Field(description="The order holding or having used it.")
    discount: Money | None
    void_reason: str | None
    issued_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Coupon) -> CouponOut:
        return cls(
            id=c.id,
            code=c.code,
            template_id=c.template_id,
            member_id=c.member_id,
            kind=c.kind,
            state=c.state,
            expired=c.state == "issued" and c.valid_until <= datetime.now(UTC),
            threshold=_money(c.threshold, c.currency),
            amount_off=_money(c.amount_off, c.currency),
            percent_off_bp=c.percent_off_bp,
            cap=_money(c.cap, c.currency),
            product_ids=list(c.product_ids or []),
            store_ids=list(c.store_ids) if c.store_ids is not None else None,
            valid_from=c.valid_from,
            valid_until=c.valid_until,
            source=c.source,
            order_id=c.order_id,
            discount=_money(c.discount, c.currency),
            void_reason=c.void_reason,
            issued_at=c.issued_at,
            updated_at=c.updated_at,
        )
