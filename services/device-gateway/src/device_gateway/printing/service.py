"""The print job queue: jobs are created from order events (one per ticket or paid order,
however often the event comes), claimed by the dispatcher, delivered, and retried with backoff
on the station's printers in priority order (failover) until printed or failed.

States: ``queued`` → ``sent`` (claimed, on its way; a lease covers a gateway that dies here)
→ ``printed``; or back to ``queued`` with a later ``next_attempt_at``; or ``failed`` after the
last attempt, with ``devices.print_job.failed`` and a ``print_failed`` alert.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.devices import PrintJobFailed
from contracts.ids import new_id
from device_gateway.alerts import service as alerts
from device_gateway.common import emit, utcnow
from device_gateway.models import Device, DeviceCommand, PrintJob
from servicekit.auth import Principal
from servicekit.errors import IllegalState, NotFound

CHANNEL = "print_jobs"
PRINTER_FOR = {"kitchen_ticket": "kitchen_printer", "receipt": "receipt_printer"}


async def notify(session: AsyncSession) -> None:
    # Delivered at commit: the dispatcher wakes as soon as the job is visible.
    await session.execute(sa.text(f"NOTIFY {CHANNEL}"))


async def create_job(
    session: AsyncSession,
    *,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    source: str,
    source_id: uuid.UUID,
    station: str,
    printer_type: str,
    document: dict[str, Any],
    event_occurred_at: datetime | None = None,
    reprint_of: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Queue a job; None when this source already has one (a redelivered or replayed event)."""
    job_id = new_id()
    inserted = await session.execute(
        pg.insert(PrintJob)
        .values(
            id=job_id,
            merchant_id=merchant_id,
            store_id=store_id,
            source=source,
            source_id=source_id,
            station=station,
            printer_type=printer_type,
            document=document,
            state="queued",
            attempts=0,
            next_attempt_at=utcnow(),
            event_occurred_at=event_occurred_at,
            reprint_of=reprint_of,
        )
        .on_conflict_do_nothing(constraint="uq_print_source")
        .returning(PrintJob.id)
    )
    if inserted.scalar_one_or_none() is None:
        return None
    await notify(session)
    return job_id


async def printers_for(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    store_id: uuid.UUID,
    printer_type: str,
    station: str,
) -> list[Device]:
    """The printers that may take a job, first choice first; the rest are its failover."""
    stmt = sa.select(Device).where(
        Device.merchant_id == merchant_id,
        Device.store_id == store_id,
        Device.type == printer_type,
    )
    if station:
        stmt = stmt.where(Device.station == station)
    stmt = stmt.order_by(Device.priority, Device.sn)
    return list((await session.scalars(stmt)).all())


Route = tuple[uuid.UUID, uuid.UUID, str, str]


def route_of(job: PrintJob) -> Route:
    return (job.merchant_id, job.store_id, job.printer_type, job.station)


async def printers_for_jobs(
    session: AsyncSession, jobs: list[PrintJob]
) -> dict[Route, list[Device]]:
    """The printers of every claimed job's route, looked up once per route."""
    found: dict[Route, list[Device]] = {}
    for route in {route_of(job) for job in jobs}:
        found[route] = await printers_for(session, *route)
    return found


async def claim_due(session: AsyncSession, limit: int, lease: float) -> list[PrintJob]:
    """Take up to ``limit`` due jobs for this dispatcher; other replicas skip them.

    The claim does not wait for its WAL flush: a claim lost with a database crash only puts
    the job back in the queue, the same as a dispatcher dying after claiming it, and the
    ticket reaches the printer one disk flush sooner."""
    await session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
    due = (
        sa.select(PrintJob.id)
        .where(PrintJob.state.in_(("queued", "sent")), PrintJob.next_attempt_at <= sa.func.now())
        .order_by(PrintJob.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await session.scalars(
        sa.update(PrintJob)
        .where(PrintJob.id.in_(due.scalar_subquery()))
        .values(
            state="sent",
            sent_at=sa.func.now(),
            attempts=PrintJob.attempts + 1,
            next_attempt_at=sa.func.now() + timedelta(seconds=lease),
        )
        .returning(PrintJob)
    )
    return list(rows.all())


async def mark_printed(session: AsyncSession, job_id: uuid.UUID, device_id: uuid.UUID) -> None:
    # As for the claim: a mark lost with a database crash reprints the ticket at worst.
    await session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
    await session.execute(
        sa.update(PrintJob)
        .where(PrintJob.id == job_id, PrintJob.state != "printed")
        .values(state="printed", printed_at=sa.func.now(), device_id=device_id, last_error=None)
    )


async def mark_failed_attempt(
    session: AsyncSession,
    job: PrintJob,
    reason: str,
    *,
    max_attempts: int,
    backoff: float,
    backoff_max: float,
) -> bool:
    """Record a failed attempt: back to the queue with backoff, or failed for good after the
    last one (event and alert). True when the job failed for good."""
    current = await session.get(PrintJob, job.id, with_for_update=True)
    if current is None or current.state in ("printed", "failed"):
        return False
    current.last_error = reason[:2000]
    if current.attempts < max_attempts:
        delay = min(backoff * 2 ** (current.attempts - 1), backoff_max)
        current.state = "queued"
        current.next_attempt_at = utcnow() + timedelta(seconds=delay)
        return False
    current.state = "failed"
    await emit(
        session,
        PrintJobFailed(
            job_id=current.id,
            store_id=current.store_id,
            source=current.source,
            source_id=current.source_id,
            station=current.station or None,
            attempts=current.attempts,
            reason=current.last_error,
        ),
        merchant_id=current.merchant_id,
        store_id=current.store_id,
        aggregate_id=current.id,
    )
    await alerts.raise_alert(
        session,
        merchant_id=current.merchant_id,
        store_id=current.store_id,
        device_id=None,
        kind="print_failed",
        detail=f"{current.source} {current.source_id} did not print: {current.last_error}",
        print_job_id=current.id,
    )
    return True


async def queue_mqtt_print(
    session: AsyncSession, job: PrintJob, device: Device, data: bytes
) -> bool:
    """Hand a job to a cloud printer as a ``print`` command, once: a retry of the job waits
    for that command's acknowledgement instead of printing it twice. False when the command
    was queued before."""
    existing = await session.scalar(
        sa.select(DeviceCommand.id).where(
            DeviceCommand.print_job_id == job.id, DeviceCommand.device_id == device.id
        )
    )
    if existing is not None:
        return False
    assert device.merchant_id is not None
    assert device.store_id is not None
    session.add(
        DeviceCommand(
            id=new_id(),
            device_id=device.id,
            merchant_id=device.merchant_id,
            store_id=device.store_id,
            kind="print",
            payload={"job_id": str(job.id), "escpos": base64.b64encode(data).decode()},
            state="queued",
            attempts=0,
            print_job_id=job.id,
            created_at=utcnow(),
        )
    )
    await session.execute(sa.text("NOTIFY device_commands"))
    return True


async def visible_job(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> PrintJob:
    stmt = sa.select(PrintJob).where(
        PrintJob.id == job_id, PrintJob.merchant_id == principal.merchant_id
    )
    if principal.store_ids is not None:
        stmt = stmt.where(PrintJob.store_id.in_(sorted(principal.store_ids)))
    job = await session.scalar(stmt)
    if job is None:
        raise NotFound("Print job not found.", code="print_job_not_found")
    return job


async def reprint(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> PrintJob:
    original = await visible_job(session, principal, job_id)
    if original.state in ("queued", "sent"):
        raise IllegalState("print_job_pending", "The job has not finished printing yet.")
    new_job_id = new_id()
    document = {**original.document, "reprint": True}
    await create_job(
        session,
        merchant_id=original.merchant_id,
        store_id=original.store_id,
        source="reprint",
        source_id=new_job_id,
        station=original.station,
        printer_type=original.printer_type,
        document=document,
        reprint_of=original.id,
    )
    job = await session.scalar(
        sa.select(PrintJob).where(
            PrintJob.source == "reprint",
            PrintJob.source_id == new_job_id,
            PrintJob.merchant_id == original.merchant_id,
        )
    )
    assert job is not None
    return job
