"""The gateway's reaction to orders: every kitchen ticket goes to its station's printer and
displays, every paid order's receipt to the store's receipt printer.

Exactly one job per ticket or order: the job's source is unique (``uq_print_source``) on top
of the inbox's event-id dedupe, so a ticket re-announced under another event id or replayed
from the broker still prints once.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import KitchenTicketCreated, OrderPaid
from device_gateway.kds import service as kds
from device_gateway.models import Device, Store
from device_gateway.printing import documents, service
from servicekit.consumer import HandlerRegistry, PoisonMessage


def merchant_of(envelope: EventEnvelope) -> uuid.UUID:
    if envelope.merchant_id is None:
        raise PoisonMessage(f"{envelope.type} {envelope.event_id} carries no merchant_id")
    return envelope.merchant_id


def build_handlers(receipt_qr_template: str | None = None) -> HandlerRegistry:
    """The printing consumer's handlers; ``receipt_qr_template`` is the QR printed on
    receipts, with ``{order_id}`` filled in (none when unset)."""
    handlers = HandlerRegistry()
    handlers.add("orders.kitchen_ticket.created", kitchen_ticket_created)

    async def on_order_paid(session: AsyncSession, envelope: EventEnvelope) -> None:
        await order_paid(session, envelope, receipt_qr_template)

    handlers.add("orders.order.paid", on_order_paid)
    return handlers


async def kitchen_ticket_created(session: AsyncSession, envelope: EventEnvelope) -> None:
    merchant_id = merchant_of(envelope)
    ticket = KitchenTicketCreated.model_validate(envelope.payload)
    await kds.add_ticket(session, merchant_id, ticket)
    station_devices = set(
        await session.scalars(
            sa.select(Device.type).where(
                Device.merchant_id == merchant_id,
                Device.store_id == ticket.store_id,
                Device.station == ticket.station,
            )
        )
    )
    if "kds" in station_devices and "kitchen_printer" not in station_devices:
        return  # a station that works from its display only: nothing to print
    await service.create_job(
        session,
        merchant_id=merchant_id,
        store_id=ticket.store_id,
        source="kitchen_ticket",
        source_id=ticket.ticket_id,
        station=ticket.station,
        printer_type="kitchen_printer",
        document=documents.kitchen_ticket(ticket, envelope.occurred_at.isoformat()),
        event_occurred_at=envelope.occurred_at,
    )


async def order_paid(
    session: AsyncSession, envelope: EventEnvelope, receipt_qr_template: str | None
) -> None:
    merchant_id = merchant_of(envelope)
    paid = OrderPaid.model_validate(envelope.payload)
    store = await session.get(Store, paid.store_id)
    store_name = store.name if store is not None and store.merchant_id == merchant_id else None
    qr = receipt_qr_template.format(order_id=paid.order_id) if receipt_qr_template else None
    await service.create_job(
        session,
        merchant_id=merchant_id,
        store_id=paid.store_id,
        source="receipt",
        source_id=paid.order_id,
        station="",
        printer_type="receipt_printer",
        document=documents.receipt(paid, store_name, envelope.occurred_at.isoformat(), qr),
        event_occurred_at=envelope.occurred_at,
    )
