"""The print dispatcher: a background task of the gateway that takes due jobs from the queue
and prints them.

It wakes on ``NOTIFY print_jobs`` (sent when a job commits), when a retry it scheduled falls
due, and polls as a fallback (a lease that ran out, another replica's retry). Jobs are
claimed with ``FOR UPDATE SKIP LOCKED`` under a lease, so several gateway replicas share the
queue and a job whose dispatcher died is taken again when its lease ends. A job that reached
the printer but whose ``printed`` mark was lost with a crash prints again: a network printer
gives no receipt to dedupe on, and a duplicate ticket is better than a lost dish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from device_gateway.alerts import service as alerts
from device_gateway.config import Settings
from device_gateway.listen import listen_forever
from device_gateway.models import Device, PrintJob
from device_gateway.printing import service
from device_gateway.printing.escpos import render
from device_gateway.printing.transport import PrinterNotReady, PrinterUnavailable, print_tcp
from servicekit.db import Database

log = logging.getLogger(__name__)


class PrintDispatcher:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max(settings.print_workers, 1))
        # A network printer takes one connection at a time; the others would wait in its
        # backlog or be refused.
        self._printer_locks: dict[uuid.UUID, asyncio.Lock] = {}

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                listen_forever(self.database, {service.CHANNEL: self._wake.set}),
                name="print-listen",
            ),
            asyncio.create_task(self._run(), name="print-dispatch"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._inflight]:
            task.cancel()
        for task in [*self._tasks, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.print_poll_interval)
            self._wake.clear()
            try:
                await self.dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("print dispatch failed: %s", exc)
                await asyncio.sleep(self.settings.print_poll_interval)

    async def dispatch_due(self) -> int:
        """Claim and start every due job (as many as there are free slots at a time)."""
        started = 0
        while True:
            free = self.settings.print_workers * 4 - len(self._inflight)
            if free <= 0:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            async with self.database.transaction() as session:
                jobs = await service.claim_due(session, free, self.settings.print_lease_seconds)
                printers = await service.printers_for_jobs(session, jobs)
            for job in jobs:
                task = asyncio.create_task(
                    self._deliver_guarded(job, printers.get(service.route_of(job), [])),
                    name=f"print-{job.id}",
                )
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            started += len(jobs)
            if len(jobs) < free:
                return started

    async def _deliver_guarded(self, job: PrintJob, printers: list[Device]) -> None:
        async with self._slots:
            try:
                await self.deliver(job, printers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The lease brings the job back; nothing is lost.
                log.exception("delivering print job %s failed: %s", job.id, exc)

    async def deliver(self, job: PrintJob, printers: list[Device]) -> None:
        """Print ``job`` on the first of ``printers`` that takes it (the rest are failover)."""
        settings = self.settings
        errors: list[str] = []
        for printer in printers:
            data = render(job.document, printer.paper_width_mm)
            if printer.connection == "mqtt":
                async with self.database.transaction() as session:
                    queued = await service.queue_mqtt_print(session, job, printer, data)
                if queued or job.attempts < settings.print_max_attempts:
                    return  # printed when the device acknowledges the command
                errors.append(f"{printer.sn}: the cloud printer did not acknowledge the job")
                break
            if not printer.host or not printer.port:
                errors.append(f"{printer.sn}: no address")
                continue
            lock = self._printer_locks.setdefault(printer.id, asyncio.Lock())
            try:
                async with lock:
                    status = await print_tcp(
                        printer.host,
                        printer.port,
                        data,
                        connect_timeout=settings.print_connect_timeout,
                        status_timeout=settings.print_status_timeout,
                        ask_status=(printer.state or {}).get("answers_status", True),
                    )
            except PrinterNotReady as exc:
                errors.append(f"{printer.sn}: {exc.condition}")
                await self._not_ready(printer, exc.condition)
                continue
            except PrinterUnavailable as exc:
                errors.append(f"{printer.sn}: {exc}")
                continue
            async with self.database.transaction() as session:
                await service.mark_printed(session, job.id, printer.id)
                state = printer.state or {}
                learnt_silent = not status.answered and state.get("answers_status", True)
                if state.get("paper", "ok") != "ok" or learnt_silent:
                    # Only when something changed: the common case costs one statement.
                    await alerts.resolve(session, printer.id, "paper_out", "cover_open")
                    current = await session.get(Device, printer.id, with_for_update=True)
                    if current is not None:
                        current.state = {
                            **(current.state or {}),
                            "paper": "ok",
                            "answers_status": status.answered,
                        }
            return
        if not printers:
            where = f"station {job.station!r}" if job.station else "the store"
            errors.append(f"no {job.printer_type} bound for {where}")
        async with self.database.transaction() as session:
            failed = await service.mark_failed_attempt(
                session,
                job,
                "; ".join(errors),
                max_attempts=settings.print_max_attempts,
                backoff=settings.print_retry_backoff,
                backoff_max=settings.print_retry_backoff_max,
            )
        if failed:
            log.error("print job %s failed after %d attempts: %s", job.id, job.attempts, errors)
        else:
            # The retry is due after its backoff: wake then rather than poll for it.
            delay = min(
                settings.print_retry_backoff * 2 ** max(job.attempts - 1, 0),
                settings.print_retry_backoff_max,
            )
            asyncio.get_running_loop().call_later(delay + 0.05, self._wake.set)

    async def _not_ready(self, printer: Device, condition: str) -> None:
        assert printer.merchant_id is not None
        assert printer.store_id is not None
        async with self.database.transaction() as session:
            current = await session.get(Device, printer.id, with_for_update=True)
            if current is not None:
                current.state = {**(current.state or {}), "paper": condition}
            await alerts.raise_alert(
                session,
                merchant_id=printer.merchant_id,
                store_id=printer.store_id,
                device_id=printer.id,
                kind=condition,
                detail=f"{printer.type} {printer.sn}: {condition.replace('_', ' ')}",
            )
