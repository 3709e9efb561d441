"""Events of the orders service: orders through their life and kitchen tickets."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from contracts.money import Money
from contracts.registry import EventPayload, event

Channel = Literal["pos", "mini_program", "qr_table", "delivery"]
TenderMethod = Literal["cash", "wechat_pay", "alipay", "unionpay", "card", "stored_value", "points"]


class OrderLine(EventPayload):
    line_id: UUID
    product_id: UUID
    name: str
    quantity: int = Field(gt=0)
    unit_price: Money
    discount: Money
    total: Money
    kitchen_station: str | None = None
    notes: str | None = None
    modifiers: list[str] = Field(default_factory=list)
    #: Tax included in ``total`` at ``tax_rate_bps`` (prices are tax-inclusive).
    tax_rate_bps: int | None = None
    tax: Money | None = None


class Tender(EventPayload):
    payment_id: UUID
    method: TenderMethod
    amount: Money


class ReturnedLine(EventPayload):
    product_id: UUID
    quantity: int = Field(gt=0)


@event(type="orders.order.placed", version=1)
class OrderPlaced(EventPayload):
    order_id: UUID
    store_id: UUID
    channel: Channel
    member_id: UUID | None = None
    table: str | None = None
    lines: list[OrderLine]
    subtotal: Money
    discount_total: Money
    total: Money
    placed_at: AwareDatetime
    number: str | None = Field(default=None, description="Short number per store and day.")
    business_day: date | None = None
    tax_total: Money | None = None
    #: ``offline`` for an order that came through the batch sync.
    source: Literal["online", "offline"] | None = None
    till_id: str | None = None
    shift_id: UUID | None = None


@event(type="orders.order.paid", version=1)
class OrderPaid(EventPayload):
    """Succeeded tenders cover the total. Carries what stock, points and printing need."""

    order_id: UUID
    store_id: UUID
    channel: Channel
    member_id: UUID | None = None
    lines: list[OrderLine]
    subtotal: Money
    discount_total: Money
    total: Money
    tenders: list[Tender]
    occurred_at: AwareDatetime
    paid_at: datetime
    number: str | None = None
    business_day: date | None = None
    tax_total: Money | None = None


@event(type="orders.order.offline_tendered", version=1)
class OrderOfflineTendered(EventPayload):
    """A till took this payment while offline (cash, or a QR/card payment the terminal
    completed with the provider): payments records it as a succeeded payment under
    ``payment_id`` and announces it as any other."""

    payment_id: UUID
    order_id: UUID
    store_id: UUID
    method: TenderMethod
    amount: Money
    tendered: Money | None = Field(default=None, description="Cash handed over, change included.")
    provider_reference: str | None = None
    till_id: str
    occurred_at: AwareDatetime


class OfflinePayment(EventPayload):
    """The offline payment a refund gives back from, as its own event announced it."""

    method: TenderMethod
    amount: Money
    tendered: Money | None = None
    provider_reference: str | None = None
    occurred_at: AwareDatetime


@event(type="orders.order.offline_refunded", version=1)
class OrderOfflineRefunded(EventPayload):
    """A till gave money back while offline, from one of the order's payments: payments
    records it as a succeeded refund under ``refund_id`` and announces it as any other.
    ``payment`` repeats the payment it refunds, so the refund can be recorded even when it
    is delivered before ``orders.order.offline_tendered`` (a replay)."""

    refund_id: UUID
    payment_id: UUID
    order_id: UUID
    store_id: UUID
    amount: Money
    returned_lines: list[ReturnedLine] = Field(default_factory=list)
    reason: str | None = None
    till_id: str
    occurred_at: AwareDatetime
    payment: OfflinePayment


@event(type="orders.order.cancelled", version=1)
class OrderCancelled(EventPayload):
    order_id: UUID
    store_id: UUID
    reason: str | None = None


@event(type="orders.order.refunded", version=1)
class OrderRefunded(EventPayload):
    """Money went back to the customer (one refund); ``returned_lines`` are the goods orders
    accepted back to the shelf: only products on the order, at most sold minus already
    returned (what the refund asked for beyond that is dropped here). Inventory restocks
    exactly these. ``fully_refunded`` is true once the refunds cover the whole paid total.
    A refund that arrives before its order is paid is announced once the order is paid; one
    for an order that was never paid (cancelled) is never announced."""

    order_id: UUID
    store_id: UUID
    member_id: UUID | None = None
    refund_id: UUID
    payment_id: UUID
    amount: Money
    refunded_total: Money
    order_total: Money
    returned_lines: list[ReturnedLine] = Field(default_factory=list)
    fully_refunded: bool


class TicketLine(EventPayload):
    name: str
    quantity: int = Field(gt=0)
    notes: str | None = None
    modifiers: list[str] = Field(default_factory=list)


@event(type="orders.kitchen_ticket.created", version=1)
class KitchenTicketCreated(EventPayload):
    ticket_id: UUID
    order_id: UUID
    store_id: UUID
    station: str
    table: str | None = None
    lines: list[TicketLine]


@event(type="orders.coupon.reserved", version=1)
class CouponReserved(EventPayload):
    """An order placed with this coupon holds it: no other order can use it. ``sequence``
    rises with every change of the coupon's redemption, so a consumer keeps the highest."""

    coupon_id: UUID
    member_id: UUID
    order_id: UUID
    store_id: UUID
    discount: Money
    sequence: int = Field(ge=1)


@event(type="orders.coupon.redeemed", version=1)
class CouponRedeemed(EventPayload):
    """The order holding the coupon was paid: the coupon is used."""

    coupon_id: UUID
    member_id: UUID
    order_id: UUID
    store_id: UUID
    discount: Money
    sequence: int = Field(ge=1)


@event(type="orders.coupon.released", version=1)
class CouponReleased(EventPayload):
    """The coupon can be used again: its order was cancelled, or refunded in full."""

    coupon_id: UUID
    member_id: UUID
    order_id: UUID
    reason: Literal["cancelled", "refunded"]
    sequence: int = Field(ge=1)
