"""Reconciliation: settle what the provider's answers left open, and never keep money.

One pass (:func:`reconcile_pending`; tests call it directly, :class:`Reconciler` runs it in
the background every ``reconcile_interval_seconds``):

* a payment pending for more than ``older_than`` seconds, or pending on an order that was
  cancelled meanwhile, is queried at the provider; a capture is applied (and refunded when
  its order was cancelled); one with no final answer after ``timeout`` seconds, or whose order
  was cancelled, is first *cancelled at the provider* and only then failed, so the provider can
  no longer capture it (if it captured just before, the capture is applied and refunded);
* money still held for a cancelled order (a payment that succeeded before the cancellation
  was known) is refunded with reason ``order_cancelled``;
* a pending refund (the provider did not answer, or the process died) is asked again with
  the same refund id, so the provider refunds once.

The provider is always called with no transaction open; each outcome is applied in its own
short transaction that re-checks the row is still pending, skipping rows another replica (or
a notification) is working on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from payments.models import OrderReplica, Payment, Refund
from payments.payment import refunds
from payments.payment.service import ORDER_CANCELLED, apply_capture, mark_failed
from payments.providers import Providers
from payments.providers.base import ProviderResult
from payments.stored_value.service import MEMBERS
from servicekit.db import Database

log = logging.getLogger(__name__)

TIMED_OUT = "payment_timed_out"


@dataclass
class ReconcileReport:
    checked: int = 0
    succeeded: int = 0
    failed: int = 0
    still_pending: int = 0
    cancelled_at_provider: int = 0
    refunds_opened: int = 0
    refunds_done: int = 0


def _cancelled_order() -> sa.ColumnElement[bool]:
    return sa.exists().where(
        OrderReplica.merchant_id == Payment.merchant_id,
        OrderReplica.order_id == Payment.order_id,
        OrderReplica.state == "cancelled",
    )


async def reconcile_pending(
    database: Database,
    providers: Providers,
    *,
    older_than: float,
    timeout: float,
    now: datetime | None = None,
    limit: int = 100,
) -> ReconcileReport:
    """One pass; see the module docstring."""
    moment = now or datetime.now(UTC)
    cutoff = moment - timedelta(seconds=older_than)
    report = ReconcileReport()
    async with database.transaction() as session:
        pending = list(
            await session.scalars(
                sa.select(Payment.id)
                .where(
                    Payment.status == "pending",
                    # Cash is never pending; members answers stored value by event, and its
                    # request is in the outbox: there is no provider to ask or cancel.
                    Payment.provider.notin_(("cash", MEMBERS)),
                    sa.or_(Payment.created_at < cutoff, _cancelled_order()),
                )
                .order_by(Payment.created_at)
                .limit(limit)
            )
        )
        kept = list(
            await session.scalars(
                sa.select(Payment.id)
                .where(
                    Payment.status.in_(("succeeded", "partially_refunded")),
                    Payment.refunded_amount < Payment.amount,
                    _cancelled_order(),
                )
                .limit(limit)
            )
        )
    for payment_id in pending:
        try:
            outcome = await _settle_pending(
                database, providers, payment_id, moment=moment, timeout=timeout, report=report
            )
        except Exception as exc:
            log.warning("could not reconcile payment %s: %s", payment_id, exc)
            continue
        if outcome is None:
            continue
        report.checked += 1
        if outcome == "succeeded":
            report.succeeded += 1
        elif outcome == "failed":
            report.failed += 1
        else:
            report.still_pending += 1
    for payment_id in kept:
        try:
            async with database.transaction() as session:
                payment = await _lock_if(session, payment_id, ("succeeded", "partially_refunded"))
                if payment is not None and await refunds.open_automatic(
                    session, payment, ORDER_CANCELLED
                ):
                    report.refunds_opened += 1
        except Exception as exc:
            log.warning("could not open the refund of payment %s: %s", payment_id, exc)
    async with database.transaction() as session:
        due = list(
            await session.scalars(
                sa.select(Refund.id)
                .where(Refund.status == "pending", Refund.created_at < cutoff)
                .order_by(Refund.created_at)
                .limit(limit)
            )
        )
    for refund_id in due:
        try:
            refund = await refunds.carry_out(database, providers, refund_id)
        except Exception as exc:
            log.warning("could not carry out refund %s: %s", refund_id, exc)
            continue
        if refund.status != "pending":
            report.refunds_done += 1
    return report


async def _lock_if(
    session: AsyncSession, payment_id: uuid.UUID, states: tuple[str, ...]
) -> Payment | None:
    payment: Payment | None = await session.scalar(
        sa.select(Payment)
        .where(Payment.id == payment_id, Payment.status.in_(states))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return payment


async def _settle_pending(
    database: Database,
    providers: Providers,
    payment_id: uuid.UUID,
    *,
    moment: datetime,
    timeout: float,
    report: ReconcileReport,
) -> str | None:
    async with database.transaction() as session:
        payment = await session.get(Payment, payment_id)
        if payment is None or payment.status != "pending":
            return None
        order_state = await session.scalar(
            sa.select(OrderReplica.state).where(
                OrderReplica.merchant_id == payment.merchant_id,
                OrderReplica.order_id == payment.order_id,
            )
        )
    adapter = providers.named(payment.provider)
    result = await adapter.query(payment.id)
    reason: str | None = None
    if result.status in ("pending", "unknown"):
        if order_state == "cancelled":
            reason = ORDER_CANCELLED
        elif (moment - payment.created_at).total_seconds() >= timeout:
            reason = TIMED_OUT
        else:
            return "pending"
        # Closed at the provider before we call it failed: it can no longer capture. If it
        # captured in between, the answer says so and the capture is applied instead.
        result = await adapter.cancel(payment.id)
        report.cancelled_at_provider += 1
        if result.status == "pending":
            return "pending"  # not closed yet: failing it now could keep money; next pass
    opened = await _apply(database, payment_id, result, reason)
    if opened:
        report.refunds_opened += len(opened)
        await refunds.carry_out_quietly(database, providers, opened)
    return _outcome_of(result)


def _outcome_of(result: ProviderResult) -> str:
    return "succeeded" if result.status == "succeeded" else "failed"


async def _apply(
    database: Database, payment_id: uuid.UUID, result: ProviderResult, reason: str | None
) -> list[uuid.UUID]:
    async with database.transaction() as session:
        payment = await _lock_if(session, payment_id, ("pending", "failed"))
        if payment is None:
            return []
        if result.status == "succeeded":
            return await apply_capture(session, payment, result.provider_reference)
        if payment.status == "pending":
            await mark_failed(session, payment, reason or result.reason or "declined")
        return []


class Reconciler:
    """The background loop; started and stopped with the service."""

    def __init__(
        self,
        database: Database,
        providers: Providers,
        *,
        interval: float,
        older_than: float,
        timeout: float,
    ) -> None:
        self.database = database
        self.providers = providers
        self.interval = interval
        self.older_than = older_than
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="payments-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                report = await reconcile_pending(
                    self.database,
                    self.providers,
                    older_than=self.older_than,
                    timeout=self.timeout,
                )
                if report.checked or report.refunds_opened or report.refunds_done:
                    log.info("reconciled: %s", report)
            except Exception as exc:
                log.warning("reconciliation pass failed: %s", exc)
