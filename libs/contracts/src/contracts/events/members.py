"""Events of the members service."""

from __future__ import annotations

from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from contracts.events.payments import MemberTender
from contracts.money import Money
from contracts.registry import EventPayload, event


@event(type="members.member.created", version=1)
class MemberCreated(EventPayload):
    member_id: UUID
    level: str | None = None


@event(type="members.points.awarded", version=1)
class PointsAwarded(EventPayload):
    member_id: UUID
    order_id: UUID
    points: int
    balance: int


@event(type="members.points.reversed", version=1)
class PointsReversed(EventPayload):
    member_id: UUID
    order_id: UUID
    refund_id: UUID
    points: int
    balance: int


@event(type="members.member.updated", version=1)
class MemberUpdated(EventPayload):
    """A member's level, tags or birthday changed. ``version`` rises with every change of the
    member, so a consumer keeps the highest it has seen and ignores a late older one."""

    member_id: UUID
    version: int = Field(ge=1)
    level: str | None = None
    tags: list[str] = Field(default_factory=list)
    birthday: date | None = None


CouponKind = Literal["full_reduction", "percentage", "no_threshold", "product"]


@event(type="members.coupon.issued", version=1)
class CouponIssued(EventPayload):
    """A coupon now belongs to a member, with the terms orders prices it by.

    * ``full_reduction``: ``amount_off`` when the eligible subtotal reaches ``threshold``;
    * ``percentage``: ``percent_off_bp`` basis points off the eligible subtotal, at most ``cap``
      (when set), from ``threshold`` (when set);
    * ``no_threshold``: ``amount_off``, never more than the eligible subtotal;
    * ``product``: on one unit of one of ``product_ids``: ``amount_off`` (at most its price), or
      the unit free when ``amount_off`` is absent.

    The eligible subtotal is the order's, or only the lines of ``product_ids`` when they are
    given (except for ``product``). ``store_ids`` absent: valid in every store.
    """

    coupon_id: UUID
    member_id: UUID
    template_id: UUID
    code: str
    kind: CouponKind
    threshold: Money | None = None
    amount_off: Money | None = None
    percent_off_bp: int | None = Field(default=None, gt=0, le=10_000)
    cap: Money | None = None
    product_ids: list[UUID] = Field(default_factory=list)
    store_ids: list[UUID] | None = None
    valid_from: AwareDatetime
    valid_until: AwareDatetime


@event(type="members.coupon.voided", version=1)
class CouponVoided(EventPayload):
    """The merchant withdrew a coupon before it was used: it can no longer be redeemed."""

    coupon_id: UUID
    member_id: UUID
    reason: str


@event(type="members.stored_value.recharged", version=1)
class StoredValueRecharged(EventPayload):
    """A paid recharge was credited: ``principal`` is what was paid, ``bonus`` what the
    merchant's bonus rules added; ``balance`` is the account's total after it."""

    member_id: UUID
    payment_id: UUID
    principal: Money
    bonus: Money
    balance: Money


@event(type="members.stored_value.recharge_refused", version=1)
class StoredValueRechargeRefused(EventPayload):
    """A paid recharge could not be credited (``member_not_found``: no such member in the
    payment's merchant; ``currency_mismatch``: the account holds another currency). Payments
    gives the money back."""

    member_id: UUID
    payment_id: UUID
    amount: Money
    reason: str


@event(type="members.stored_value.debited", version=1)
class StoredValueDebited(EventPayload):
    """A payment took ``amount`` from what the member holds. ``tender: stored_value``:
    ``principal`` from the paid part, ``bonus`` from the bonus part (principal first),
    ``balance`` the account after it. ``tender: points``: ``points`` redeemed at the
    merchant's rate, ``points_balance`` after it."""

    tender: MemberTender = "stored_value"
    member_id: UUID
    payment_id: UUID
    amount: Money
    principal: Money
    bonus: Money
    balance: Money | None = None
    points: int = Field(default=0, ge=0)
    points_balance: int | None = None


@event(type="members.stored_value.debit_refused", version=1)
class StoredValueDebitRefused(EventPayload):
    """A stored-value or points payment could not be taken; nothing moved. ``reason`` is
    ``insufficient_balance``, ``insufficient_points``, ``points_not_accepted`` (no rate
    set), ``member_not_found`` or ``currency_mismatch``."""

    tender: MemberTender = "stored_value"
    member_id: UUID
    payment_id: UUID
    amount: Money
    reason: str


@event(type="members.stored_value.refunded", version=1)
class StoredValueRefunded(EventPayload):
    """A refund of a stored-value payment went back to the account, each part to where it
    came from (``principal`` and ``bonus``); of a points payment, its share of the points."""

    tender: MemberTender = "stored_value"
    member_id: UUID
    payment_id: UUID
    refund_id: UUID
    amount: Money
    principal: Money
    bonus: Money
    balance: Money | None = None
    points: int = Field(default=0, ge=0)
    points_balance: int | None = None


@event(type="members.stored_value.adjusted", version=1)
class StoredValueAdjusted(EventPayload):
    """Staff corrected an account by hand (signed ``principal`` and ``bonus`` changes), with
    the reason in ``note``; ``balance`` is the account's total after it."""

    member_id: UUID
    adjustment_id: UUID
    principal: Money
    bonus: Money
    balance: Money
    note: str
