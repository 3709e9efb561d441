"""Reconciliation of payments that got no answer: ask the provider, and never leave a payment
pending forever.

:func:`reconcile_pending` is one pass (tests call it directly); :class:`Reconciler` runs it
in the background every ``reconcile_interval_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from payments.models import Payment
from payments.payment.service import mark_failed, mark_succeeded
from payments.providers import Providers
from servicekit.db import Database

log = logging.getLogger(__name__)

TIMED_OUT = "payment_timed_out"


@dataclass
class ReconcileReport:
    checked: int = 0
    succeeded: int = 0
    failed: int = 0
    still_pending: int = 0


async def reconcile_pending(
    database: Database,
    providers: Providers,
    *,
    older_than: float,
    timeout: float,
    now: datetime | None = None,
    limit: int = 100,
) -> ReconcileReport:
    """Query the provider for every payment pending for more than ``older_than`` seconds;
    one the provider has no final answer for after ``timeout`` seconds fails with
    ``payment_timed_out``. Each payment is settled in its own transaction, skipping rows
    another replica (or a notification) is working on."""
    moment = now or datetime.now(UTC)
    report = ReconcileReport()
    async with database.transaction() as session:
        ids = list(
            await session.scalars(
                sa.select(Payment.id)
                .where(
                    Payment.status == "pending",
                    Payment.created_at < moment - timedelta(seconds=older_than),
                )
                .order_by(Payment.created_at)
                .limit(limit)
            )
        )
    for payment_id in ids:
        try:
            outcome = await _reconcile_one(
                database, providers, payment_id, moment=moment, timeout=timeout
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
    return report


async def _reconcile_one(
    database: Database,
    providers: Providers,
    payment_id: object,
    *,
    moment: datetime,
    timeout: float,
) -> str | None:
    async with database.transaction() as session:
        payment = await session.scalar(
            sa.select(Payment)
            .where(Payment.id == payment_id, Payment.status == "pending")
            .with_for_update(skip_locked=True)
        )
        if payment is None:
            return None  # settled meanwhile, or being settled right now
        result = await providers.named(payment.provider).query(payment.id)
        if result.status == "succeeded":
            await mark_succeeded(session, payment, result.provider_reference)
            return "succeeded"
        if result.status == "failed":
            await mark_failed(session, payment, result.reason or "declined")
            return "failed"
        if (moment - payment.created_at).total_seconds() >= timeout:
            await mark_failed(session, payment, TIMED_OUT)
            return "failed"
        return "pending"


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
                if report.checked:
                    log.info("reconciled pending payments: %s", report)
            except Exception as exc:
                log.warning("reconciliation pass failed: %s", exc)
