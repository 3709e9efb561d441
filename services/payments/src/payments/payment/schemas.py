"""Request and response bodies of the payment endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

from contracts.events.orders import ReturnedLine
from contracts.money import Money
from payments.models import Payment, Refund

PaymentMethod = Literal[
    "cash", "wechat_pay", "alipay", "unionpay", "card", "stored_value", "points"
]
PaymentStatus = Literal["pending", "succeeded", "failed", "partially_refunded", "refunded"]
PaymentPurpose = Literal["order", "stored_value_recharge"]


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: PaymentPurpose = Field(
        default="order",
        description="``order``: pays ``order_id``. ``stored_value_recharge``: money onto "
        "``member_id``'s stored-value account at ``store_id`` (no order; not a sale).",
    )
    order_id: uuid.UUID | None = Field(default=None, description="Required to pay an order.")
    member_id: uuid.UUID | None = Field(
        default=None,
        description="The member recharged, or whose stored value or points pay "
        "(``stored_value``, ``points``).",
    )
    store_id: uuid.UUID | None = Field(
        default=None, description="Recharges only: the store taking the money."
    )
    method: PaymentMethod
    amount: Money = Field(description="What this payment applies to the order.")
    tendered: Money | None = Field(
        default=None,
        description="Cash only: what the customer handed over (change = tendered - amount).",
    )
    sandbox: dict[str, Any] | None = Field(
        default=None,
        description="Sandbox provider only, test environments only: "
        '{"outcome": "succeed|decline|timeout|silent_success", "notify_times": 1|2}.',
    )


class PaymentOut(BaseModel):
    id: uuid.UUID
    purpose: PaymentPurpose
    order_id: uuid.UUID | None
    member_id: uuid.UUID | None
    store_id: uuid.UUID
    method: PaymentMethod
    provider: str
    status: PaymentStatus
    amount: Money
    tendered: Money | None
    change: Money | None
    fee_rate_bps: int
    fee: Money
    net: Money
    refunded: Money
    fee_refunded: Money
    settlement_account_id: uuid.UUID | None
    provider_reference: str | None
    qr_code: str | None
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, p: Payment) -> PaymentOut:
        def money(amount: int) -> Money:
            return Money.of(amount, p.currency)

        return cls(
            id=p.id,
            purpose=p.purpose,
            order_id=p.order_id,
            member_id=p.member_id,
            store_id=p.store_id,
            method=p.method,
            provider=p.provider,
            status=p.status,
            amount=money(p.amount),
            tendered=money(p.tendered_amount) if p.tendered_amount is not None else None,
            change=money(p.change_amount) if p.change_amount is not None else None,
            fee_rate_bps=p.fee_rate_bps,
            fee=money(p.fee_amount),
            # What settles to the merchant: nothing for a payment that captured nothing.
            net=money(0 if p.status == "failed" else p.amount - p.fee_amount),
            refunded=money(p.refunded_amount),
            fee_refunded=money(p.fee_refunded_amount),
            settlement_account_id=p.settlement_account_id,
            provider_reference=p.provider_reference,
            qr_code=p.qr_code,
            failure_reason=p.failure_reason,
            created_at=p.created_at,
            completed_at=p.completed_at,
        )


class ReturnedLineIn(BaseModel):
    """Goods brought back: a product of the order and how many."""

    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Annotated[int, Strict(), Field(gt=0, le=100_000)]


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: uuid.UUID | None = Field(
        default=None,
        description="Client-generated id of the refund; without it the id is derived from the "
        "Idempotency-Key. Either way a retried request refunds once.",
    )
    amount: Money
    returned_lines: Annotated[list[ReturnedLineIn], Field(max_length=500)] = Field(
        default_factory=list,
        description="Goods brought back: only products of the order, at most what was sold "
        "minus what earlier refunds brought back.",
    )
    reason: str | None = Field(default=None, max_length=500)


class RefundOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    order_id: uuid.UUID | None
    store_id: uuid.UUID
    #: ``pending`` while the provider (for stored value: members) is being asked (settled
    #: automatically), then
    #: ``succeeded`` or ``failed`` (the provider refused; nothing went back).
    status: Literal["pending", "succeeded", "failed"]
    amount: Money
    fee_refunded: Money
    provider_reference: str | None
    reason: str | None
    failure_reason: str | None
    returned_lines: list[ReturnedLine]
    created_at: datetime

    @classmethod
    def of(cls, r: Refund) -> RefundOut:
        return cls(
            id=r.id,
            payment_id=r.payment_id,
            order_id=r.order_id,
            store_id=r.store_id,
            status=r.status,
            amount=Money.of(r.amount, r.currency),
            fee_refunded=Money.of(r.fee_refunded_amount, r.currency),
            provider_reference=r.provider_reference,
            reason=r.reason,
            failure_reason=r.failure_reason,
            returned_lines=[ReturnedLine.model_validate(line) for line in r.returned_lines],
            created_at=r.created_at,
        )


class NotificationAck(BaseModel):
    """``applied``: this notification settled the payment; ``duplicate``: seen before;
    ``already_final``: the payment had already been settled (by an earlier notification or
    by reconciliation)."""

    result: Literal["applied", "duplicate", "already_final"]
