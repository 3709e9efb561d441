"""The sandbox provider: an in-process PSP that behaves like a real one.

``create`` answers *pending* with a QR code and, a moment later, calls back asynchronously
with an HMAC-signed notification (see :mod:`payments.providers.signing`) through a
:data:`Notifier` (over HTTP to the service's own public URL in the local stack; straight into
the app in tests). ``query`` reports what it holds; ``cancel`` closes a payment that has not
captured (a closed payment never captures, and a payment id cancelled before it was created
can no longer be created, as with a real PSP's "close order"); ``refund`` succeeds at once and
is idempotent by refund id.

A payment request may carry ``sandbox`` instructions (test-only; refused unless
``sandbox_instructions_enabled``)::

    {"outcome": "succeed" | "decline" | "timeout" | "silent_success", "notify_times": 1 | 2}

* ``succeed`` (default): captured, notified ``notify_times`` times;
* ``decline``: refused, notified as failed with reason ``declined``;
* ``timeout``: never completes and never notifies; ``query`` keeps answering pending;
* ``silent_success``: captured but the notification is lost; only ``query`` tells;
* ``late_success``: pending, then captured (and notified) when :meth:`SandboxProvider.capture`
  is called, whatever happened meanwhile unless it was cancelled: a customer who pays a QR
  code late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import httpx

from contracts.ids import new_id
from contracts.money import Money
from payments.providers import signing
from payments.providers.base import (
    Notification,
    NotificationRejected,
    ProviderPayment,
    ProviderRefund,
    ProviderRefundResult,
    ProviderResult,
    ProviderStatus,
)

log = logging.getLogger(__name__)

NAME: Final = "sandbox"
OUTCOMES: Final = frozenset({"succeed", "decline", "timeout", "silent_success", "late_success"})

#: Delivers a notification: (path, raw body, headers) -> HTTP status of the answer.
Notifier = Callable[[str, bytes, dict[str, str]], Awaitable[int]]


def http_notifier(base_url: str, *, timeout: float = 10.0) -> Notifier:
    """A notifier that POSTs to ``base_url`` (the payments service's public URL)."""

    async def notify(path: str, body: bytes, headers: dict[str, str]) -> int:
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
            response = await client.post(path, content=body, headers=headers)
            return response.status_code

    return notify


def parse_instructions(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validated sandbox instructions; ``ValueError`` says what is wrong."""
    unknown = set(raw) - {"outcome", "notify_times"}
    if unknown:
        raise ValueError(f"unknown sandbox instructions: {sorted(unknown)}")
    outcome = raw.get("outcome", "succeed")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
    times = raw.get("notify_times", 1)
    if isinstance(times, bool) or times not in (1, 2):
        raise ValueError("notify_times must be 1 or 2")
    return {"outcome": outcome, "notify_times": times}


@dataclass
class _Transaction:
    payment_id: uuid.UUID
    reference: str
    amount: Money
    outcome: str
    notify_times: int
    status: ProviderStatus
    refunded: int = 0
    reason: str | None = None


class SandboxProvider:
    """See the module docstring. ``notify_delay`` is how long the PSP "thinks"."""

    name = NAME

    def __init__(
        self,
        *,
        secret: str,
        notifier: Notifier | None,
        notify_delay: float = 0.2,
        tolerance_seconds: int = 300,
        retries: int = 3,
    ) -> None:
        self.secret = secret
        self.notifier = notifier
        self.notify_delay = notify_delay
        self.tolerance_seconds = tolerance_seconds
        self.retries = retries
        self.transactions: dict[uuid.UUID, _Transaction] = {}
        #: Refunds done, by refund id: asking twice refunds once.
        self.refunds: dict[uuid.UUID, ProviderRefundResult] = {}
        #: Payment ids closed before they were ever created.
        self.closed: set[uuid.UUID] = set()
        #: Every call made, as (operation, id): for tests.
        self.calls: list[tuple[str, uuid.UUID]] = []
        #: Every notification sent, as (raw body, headers): for tests replaying them.
        self.sent: list[tuple[bytes, dict[str, str]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- adapter interface ----------------------------------------------------------------
    async def create(self, payment: ProviderPayment) -> ProviderResult:
        self.calls.append(("create", payment.payment_id))
        if payment.payment_id in self.closed:
            return ProviderResult(status="failed", reason="closed")
        existing = self.transactions.get(payment.payment_id)
        if existing is None:
            instructions = parse_instructions(payment.instructions)
            outcome = instructions["outcome"]
            existing = _Transaction(
                payment_id=payment.payment_id,
                reference=f"sbx_{new_id().hex}",
                amount=payment.amount,
                outcome=outcome,
                notify_times=instructions["notify_times"],
                status="pending",
            )
            # The PSP decides at once; the merchant only learns it from the notification.
            if outcome in ("succeed", "silent_success"):
                existing.status = "succeeded"
            elif outcome == "decline":
                existing.status = "failed"
                existing.reason = "declined"
            self.transactions[payment.payment_id] = existing
            if outcome in ("succeed", "decline"):
                self._spawn(self._notify_later(existing))
        elif existing.reason == "closed":
            return ProviderResult(
                status="failed", provider_reference=existing.reference, reason="closed"
            )
        return ProviderResult(
            status="pending",
            provider_reference=existing.reference,
            qr_code=f"sandbox://pay/{existing.reference}",
        )

    async def cancel(self, payment_id: uuid.UUID) -> ProviderResult:
        self.calls.append(("cancel", payment_id))
        txn = self.transactions.get(payment_id)
        if txn is None:
            self.closed.add(payment_id)
            return ProviderResult(status="failed", reason="closed")
        if txn.status == "pending":
            txn.status = "failed"
            txn.reason = "closed"
        return ProviderResult(
            status=txn.status, provider_reference=txn.reference, reason=txn.reason
        )

    def capture(self, payment_id: uuid.UUID) -> bool:
        """The customer pays a ``late_success`` payment now; False when it was closed."""
        txn = self.transactions[payment_id]
        if txn.status != "pending":
            return False
        txn.status = "succeeded"
        self._spawn(self._notify_later(txn))
        return True

    async def query(self, payment_id: uuid.UUID) -> ProviderResult:
        self.calls.append(("query", payment_id))
        txn = self.transactions.get(payment_id)
        if txn is None:
            return ProviderResult(status="unknown")
        return ProviderResult(
            status=txn.status, provider_reference=txn.reference, reason=txn.reason
        )

    async def refund(self, refund: ProviderRefund) -> ProviderRefundResult:
        self.calls.append(("refund", refund.refund_id))
        done = self.refunds.get(refund.refund_id)
        if done is not None:
            return done
        txn = self.transactions.get(refund.payment_id)
        if txn is None or txn.status != "succeeded":
            return ProviderRefundResult(status="failed", reason="payment_not_captured")
        if txn.refunded + refund.amount.amount > txn.amount.amount:
            return ProviderRefundResult(status="failed", reason="refund_exceeds_captured")
        txn.refunded += refund.amount.amount
        result = ProviderRefundResult(status="succeeded", provider_reference=f"sbr_{new_id().hex}")
        self.refunds[refund.refund_id] = result
        return result

    def parse_notification(
        self, body: bytes, headers: Mapping[str, str], *, now: datetime
    ) -> Notification:
        signing.verify(
            self.secret, body, headers, now=now, tolerance_seconds=self.tolerance_seconds
        )
        try:
            data = json.loads(body)
            status = data["status"]
            if status not in ("succeeded", "failed"):
                raise ValueError(status)
            return Notification(
                notification_id=str(data["notification_id"]),
                payment_id=uuid.UUID(data["payment_id"]),
                status=status,
                amount=Money.model_validate(data["amount"]),
                provider_reference=data.get("provider_reference"),
                reason=data.get("reason"),
                sent_at=datetime.fromisoformat(data["sent_at"]),
                body=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NotificationRejected(
                "malformed_notification", f"The notification body is invalid: {exc}", status=400
            ) from None

    # -- callbacks --------------------------------------------------------------------------
    def notification_for(self, payment_id: uuid.UUID) -> tuple[bytes, dict[str, str]]:
        """A freshly signed notification of the transaction's current outcome."""
        txn = self.transactions[payment_id]
        status: Literal["succeeded", "failed"] = (
            "succeeded" if txn.status == "succeeded" else "failed"
        )
        body = json.dumps(
            {
                "notification_id": f"sbn_{txn.reference}_{status}",
                "payment_id": str(txn.payment_id),
                "provider_reference": txn.reference,
                "status": status,
                "amount": txn.amount.model_dump(mode="json"),
                "reason": txn.reason,
                "sent_at": datetime.now(UTC).isoformat(),
            },
            separators=(",", ":"),
        ).encode()
        return body, signing.signed_headers(self.secret, body)

    async def _notify_later(self, txn: _Transaction) -> None:
        await asyncio.sleep(self.notify_delay)
        for _ in range(txn.notify_times):
            await self._deliver(txn)

    async def _deliver(self, txn: _Transaction) -> None:
        if self.notifier is None:
            return
        path = f"/v1/providers/{NAME}/notify"
        delay = 0.5
        for attempt in range(1, self.retries + 1):
            body, headers = self.notification_for(txn.payment_id)
            self.sent.append((body, headers))
            try:
                status = await self.notifier(path, body, headers)
                if 200 <= status < 300:
                    return
                log.warning("sandbox notification answered %s (attempt %d)", status, attempt)
            except Exception as exc:
                log.warning("sandbox notification failed (attempt %d): %s", attempt, exc)
            await asyncio.sleep(delay)
            delay *= 2

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until every scheduled notification has been delivered (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
