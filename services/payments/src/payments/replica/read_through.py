"""Reading an order through from the orders service when the replica has not heard of it yet.

A payment posted right after its order can outrun the ``orders.order.placed`` event. Then the
order is fetched from orders (``GET /v1/orders/{id}`` with the caller's own bearer token, so
orders applies the caller's rights) and applied to the replica under the same rank rule as an
event. Only orders saying 404 makes the order unknown; when orders cannot answer, the replica
is given a brief moment to catch up, and otherwise the caller gets a transient 503 that is
never stored as the idempotent answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import httpx

from payments.replica.service import OrderFacts

log = logging.getLogger(__name__)

#: The orders service's statuses, as the replica's states.
_STATES: dict[str, str] = {
    "open": "open",
    "placed": "open",
    "paid": "paid",
    "completed": "paid",
    "partially_refunded": "paid",
    "refunded": "paid",
    "cancelled": "cancelled",
}


@dataclass(frozen=True, slots=True)
class Lookup:
    outcome: Literal["found", "not_found", "unavailable"]
    facts: OrderFacts | None = None


class OrdersClient:
    """A small HTTP client of the orders service; ``transport`` replaces the network (tests)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout), transport=transport
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def fetch(
        self, merchant_id: uuid.UUID, order_id: uuid.UUID, authorization: str | None
    ) -> Lookup:
        headers = {"Authorization": authorization} if authorization else {}
        try:
            response = await self._client.get(f"/v1/orders/{order_id}", headers=headers)
        except httpx.HTTPError as exc:
            log.warning("orders unreachable reading order %s through: %s", order_id, exc)
            return Lookup("unavailable")
        if response.status_code == 404:
            return Lookup("not_found")
        if response.status_code != 200:
            log.warning("orders answered %s reading order %s", response.status_code, order_id)
            return Lookup("unavailable")
        try:
            return Lookup("found", _facts(merchant_id, order_id, response.json()))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("orders sent an unreadable order %s: %s", order_id, exc)
            return Lookup("unavailable")


def _facts(merchant_id: uuid.UUID, order_id: uuid.UUID, body: dict[str, Any]) -> OrderFacts:
    if uuid.UUID(body["id"]) != order_id:
        raise ValueError("orders answered with another order")
    state = _STATES[body["status"]]
    member = body.get("member_id")
    day = body.get("business_day")
    return OrderFacts(
        merchant_id=merchant_id,
        order_id=order_id,
        store_id=uuid.UUID(body["store_id"]),
        state=state,
        member_id=uuid.UUID(member) if member else None,
        total_amount=int(body["total"]["amount"]),
        currency=str(body["total"]["currency"]),
        lines=[(uuid.UUID(line["product_id"]), int(line["quantity"])) for line in body["lines"]],
        business_day=date.fromisoformat(day) if day else None,
    )


async def wait_briefly(probe: Any, *, seconds: float, interval: float = 0.05) -> bool:
    """Poll ``probe`` (an async callable answering a bool) for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await probe():
            return True
        await asyncio.sleep(interval)
    return False
