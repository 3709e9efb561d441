"""Events of the payments service."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from contracts.events.orders import ReturnedLine, TenderMethod
from contracts.money import Money
from contracts.registry import EventPayload, event

MemberTender = Literal["stored_value", "points"]
"""Tenders members holds: the stored-value account, or points at the merchant's rate."""


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


@event(type="payments.payment.recharge_succeeded", version=1)
class RechargeSucceeded(EventPayload):
    """A payment that was not for an order, but to recharge ``member_id``'s stored-value
    account, took the money. Members credits the principal (and the bonus its rules give)
    once per ``payment_id``. Not a sale: orders does not consume it."""

    payment_id: UUID
    member_id: UUID
    store_id: UUID
    method: TenderMethod
    amount: Money
    provider: str


@event(type="payments.payment.debit_requested", version=1)
class StoredValueDebitRequested(EventPayload):
    """A payment of ``order_id`` by ``member_id``'s stored value (``tender: stored_value``)
    or points (``tender: points``, converted by members at the merchant's rate) is pending:
    members debits ``amount`` once per ``payment_id`` (or refuses) and answers with
    ``members.stored_value.debited`` or ``members.stored_value.debit_refused``."""

    tender: MemberTender = "stored_value"
    payment_id: UUID
    member_id: UUID
    order_id: UUID
    store_id: UUID
    amount: Money


@event(type="payments.payment.credit_requested", version=1)
class StoredValueCreditRequested(EventPayload):
    """A refund of a stored-value or points payment: members puts ``amount`` back where it
    came from, once per ``refund_id``, and answers with ``members.stored_value.refunded``."""

    tender: MemberTender = "stored_value"
    refund_id: UUID
    payment_id: UUID
    member_id: UUID
    order_id: UUID
    store_id: UUID
    amount: Money
