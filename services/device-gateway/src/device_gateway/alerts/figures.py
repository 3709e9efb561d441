"""The gateway's figures for the operators, read from its database at each scrape of
``/metrics``: open device alerts by kind (a printer out of paper or offline, a print that
failed) and print jobs by state, with the age of the oldest job still waiting to print.

Gauges of database state, so that every replica reports the same truth and nothing a
rolled-back transaction did is ever counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from prometheus_client import Gauge

from device_gateway.models import DeviceAlert, PrintJob
from servicekit.db import Database
from servicekit.telemetry.metrics import REGISTRY

SERVICE = "device-gateway"
#: Every kind an alert can have, so that a kind with nothing open reads 0, not absent.
ALERT_KINDS = ("paper_out", "cover_open", "offline", "print_failed")
JOB_STATES = ("queued", "sent", "printed", "failed")

open_alerts = Gauge(
    "countertop_device_alerts_open",
    "Device alerts not yet resolved, by kind.",
    ["service", "kind"],
    registry=REGISTRY,
)
print_jobs = Gauge(
    "countertop_print_jobs",
    "Print jobs by state (printed: in the last hour).",
    ["service", "state"],
    registry=REGISTRY,
)
oldest_queued_age_seconds = Gauge(
    "countertop_print_jobs_oldest_queued_age_seconds",
    "Age of the oldest print job still waiting to print (0 when none waits).",
    ["service"],
    registry=REGISTRY,
)

_OPEN_ALERTS = (
    sa.select(DeviceAlert.kind, sa.func.count())
    .where(DeviceAlert.resolved_at.is_(None))
    .group_by(DeviceAlert.kind)
)
_JOBS = (
    sa.select(PrintJob.state, sa.func.count())
    .where(
        sa.or_(
            PrintJob.state != "printed",
            PrintJob.created_at >= sa.func.now() - sa.text("interval '1 hour'"),
        )
    )
    .group_by(PrintJob.state)
)
_OLDEST_QUEUED = sa.select(
    sa.func.coalesce(sa.func.extract("epoch", sa.func.now() - sa.func.min(PrintJob.created_at)), 0)
).where(PrintJob.state.in_(("queued", "sent")))


def refresher(database: Database) -> Callable[[], Awaitable[None]]:
    """The scrape hook that sets the gauges from ``database``."""

    async def refresh() -> None:
        async with database.engine.connect() as conn:
            alerts = dict((await conn.execute(_OPEN_ALERTS)).all())
            jobs = dict((await conn.execute(_JOBS)).all())
            age = (await conn.execute(_OLDEST_QUEUED)).scalar_one()
        for kind in {*ALERT_KINDS, *alerts}:
            open_alerts.labels(SERVICE, kind).set(int(alerts.get(kind, 0)))
        for state in {*JOB_STATES, *jobs}:
            print_jobs.labels(SERVICE, state).set(int(jobs.get(state, 0)))
        oldest_queued_age_seconds.labels(SERVICE).set(float(age or 0))

    return refresh
