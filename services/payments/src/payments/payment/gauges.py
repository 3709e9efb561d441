"""Payments' gauges for the operators: read from the database at each scrape of ``/metrics``.

* ``countertop_payments_pending_oldest_age_seconds``: how long the oldest payment has waited for
  its provider (the reconciler settles a payment after ``PAYMENTS_PAYMENT_TIMEOUT_SECONDS``; an
  age above that means the reconciler is not keeping up or the provider does not answer);
* ``countertop_payments_recent``: payments completed in the last 15 minutes by method and
  status, from which a dashboard or an alert derives the failure rate per method;
* ``countertop_payments_recent_fees_minor``: the fees charged on them, in minor units.

Gauges of database state rather than counters bumped in a transaction: a rolled-back
transaction or a second replica can never make them wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from prometheus_client import Gauge

from payments.models import Payment
from servicekit.db import Database
from servicekit.telemetry.metrics import REGISTRY

SERVICE = "payments"
WINDOW_SECONDS = 15 * 60

pending_oldest_age_seconds = Gauge(
    "countertop_payments_pending_oldest_age_seconds",
    "Age of the oldest payment still waiting for its provider (0 when none waits).",
    ["service"],
    registry=REGISTRY,
)
recent_payments = Gauge(
    "countertop_payments_recent",
    "Payments completed in the last 15 minutes, by method and status.",
    ["service", "method", "status"],
    registry=REGISTRY,
)
recent_fees_minor = Gauge(
    "countertop_payments_recent_fees_minor",
    "Fees charged on the payments completed in the last 15 minutes, in minor units.",
    ["service", "method", "currency"],
    registry=REGISTRY,
)

_OLDEST_PENDING = sa.select(
    sa.func.coalesce(sa.func.extract("epoch", sa.func.now() - sa.func.min(Payment.created_at)), 0)
).where(Payment.status == "pending")

_RECENT = (
    sa.select(
        Payment.method,
        Payment.status,
        Payment.currency,
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(Payment.fee_amount), 0),
    )
    .where(Payment.completed_at >= sa.func.now() - sa.text(f"interval '{WINDOW_SECONDS} seconds'"))
    .group_by(Payment.method, Payment.status, Payment.currency)
)


def refresher(database: Database) -> Callable[[], Awaitable[None]]:
    """The scrape hook that sets the gauges from ``database``."""

    async def refresh() -> None:
        async with database.engine.connect() as conn:
            age = (await conn.execute(_OLDEST_PENDING)).scalar_one()
            rows = (await conn.execute(_RECENT)).all()
        pending_oldest_age_seconds.labels(SERVICE).set(float(age or 0))
        # Series of a method or status that had no payment in the window drop to zero.
        for metric in (recent_payments, recent_fees_minor):
            metric.clear()
        for method, status, currency, count, fees in rows:
            recent_payments.labels(SERVICE, method, status).set(int(count))
            if status == "succeeded":
                recent_fees_minor.labels(SERVICE, method, currency).inc(int(fees))

    return refresh
