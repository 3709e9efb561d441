"""The adapter interface every payment provider (WeChat Pay, Alipay, UnionPay, card acquirers,
the sandbox) implements, and the values that cross it.

Payments never talks to a provider any other way: ``create`` starts a payment (its answer is
usually *pending*; the outcome arrives as a signed notification), ``query`` asks for the
current status (reconciliation), ``refund`` returns money to the original route, and
``parse_notification`` verifies and decodes a notification from its raw bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from contracts.money import Money

ProviderStatus = Literal["pending", "succeeded", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class ProviderPayment:
    """What a provider is asked to collect. ``payment_id`` is our reference (the provider's
    ``out_trade_no``), so asking twice for the same payment is idempotent at the provider."""

    payment_id: uuid.UUID
    merchant_id: uuid.UUID
    store_id: uuid.UUID
    method: str
    amount: Money
    settlement_account: str | None = None
    instructions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderResult:
    status: ProviderStatus
    provider_reference: str | None = None
    qr_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    refund_id: uuid.UUID
    payment_id: uuid.UUID
    provider_reference: str | None
    amount: Money


@dataclass(frozen=True, slots=True)
class ProviderRefundResult:
    status: Literal["succeeded", "failed"]
    provider_reference: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified notification: the provider says ``payment_id`` ended with ``status``."""

    notification_id: str
    payment_id: uuid.UUID
    status: Literal["succeeded", "failed"]
    amount: Money
    provider_reference: str | None
    reason: str | None
    sent_at: datetime
    body: dict[str, Any]


class NotificationRejected(Exception):
    """A notification that must change nothing: unsigned, mis-signed, stale or malformed."""

    def __init__(self, code: str, detail: str, *, status: int = 401) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


class PaymentProvider(Protocol):
    """One provider adapter."""

    name: str

    async def create(self, payment: ProviderPayment) -> ProviderResult: ...

    async def query(self, payment_id: uuid.UUID) -> ProviderResult: ...

    async def cancel(self, payment_id: uuid.UUID) -> ProviderResult:
        """Close the payment so it can no longer capture. Answers what the payment ended as:
        ``failed`` when it is closed (or was never started), ``succeeded`` when it had already
        captured (then it must be refunded instead)."""
        ...

    async def refund(self, refund: ProviderRefund) -> ProviderRefundResult:
        """Idempotent by ``refund.refund_id``: asking again answers the first outcome."""
        ...

    def parse_notification(
        self, body: bytes, headers: Mapping[str, str], *, now: datetime
    ) -> Notification:
        """Verify ``body`` (the raw bytes, never re-serialized JSON) against ``headers``;
        :class:`NotificationRejected` when it must not be believed."""
        ...
