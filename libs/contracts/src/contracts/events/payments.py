"""Events of the payments service."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from contracts.events.orders import ReturnedLine, TenderMethod
from contracts.money import Money
from contracts.registry import EventPayload, event


@event(type="payments.payment.succeeded", version=1)
class PaymentSucceeded(EventPayload):
    payment_id: UUID
    order_id: UUID
    store_id: UUID
    method: TenderMethod
    amount: Money
    fee: Money
    net: Money
    fee_rate_bps: int = Field(ge=0)
    settlement_account_id: UUID | None = None
    provider: str
    provider_reference: str | None = None


@event(type="payments.payment.failed", version=1)
class PaymentFailed(EventPayload):
    payment_id: UUID
    order_id: UUID
    store_id: UUID
    method: TenderMethod
    amount: Money
    reason: str


@event(type="payments.payment.refunded", version=1)
class PaymentRefunded(EventPayload):
    """Money returned to the original route; ``returned_lines`` name the goods brought back.

    ``reason`` is the refunder's note, or for a refund payments made by itself
    ``order_cancelled`` (money captured for a cancelled order) or ``late_capture`` (money
    captured after the payment had failed)."""

    refund_id: UUID
    payment_id: UUID
    order_id: UUID
    store_id: UUID
    method: TenderMethod
    amount: Money
    fee_refunded: Money
    returned_lines: list[ReturnedLine] = Field(default_factory=list)
    reason: str | None = None
