"""What gets printed, built from the order events: a JSON document per job, rendered to
ESC/POS for the printer that takes the job (58 or 80 mm)."""

from __future__ import annotations

from typing import Any

from contracts.events.orders import KitchenTicketCreated, OrderPaid


def order_number(order_id: object) -> str:
    # Orders has no human order number yet: the last six hex digits of the id are what the
    # cashier reads out.
    return str(order_id).replace("-", "")[-6:].upper()


def kitchen_ticket(ticket: KitchenTicketCreated, at: str) -> dict[str, Any]:
    return {
        "kind": "kitchen_ticket",
        "ticket_id": str(ticket.ticket_id),
        "order_id": str(ticket.order_id),
        "order_number": order_number(ticket.order_id),
        "station": ticket.station,
        "table": ticket.table,
        "at": at,
        "lines": [
            {
                "name": line.name,
                "quantity": line.quantity,
                "modifiers": list(line.modifiers),
                "notes": line.notes,
            }
            for line in ticket.lines
        ],
    }


def receipt(
    paid: OrderPaid, store_name: str | None, at: str, qr: str | None = None
) -> dict[str, Any]:
    return {
        "kind": "receipt",
        "order_id": str(paid.order_id),
        "order_number": order_number(paid.order_id),
        "store_name": store_name or "",
        "at": at,
        "currency": paid.total.currency,
        "lines": [
            {
                "name": line.name,
                "quantity": line.quantity,
                "total": line.total.amount,
                "modifiers": list(line.modifiers),
                "notes": line.notes,
            }
            for line in paid.lines
        ],
        "subtotal": paid.subtotal.amount,
        "discount": paid.discount_total.amount,
        "total": paid.total.amount,
        "tenders": [{"method": t.method, "amount": t.amount.amount} for t in paid.tenders],
        "qr": qr,
        "qr_caption": "Scan for e-invoice 扫码开发票" if qr else None,
    }
