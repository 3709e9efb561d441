"""An answer that may change on a plain retry is never kept under an Idempotency-Key."""

from __future__ import annotations

import uuid

from .conftest import Harness


async def test_order_not_found_is_not_replayed(harness: Harness) -> None:
    """Payments may not have heard of the order yet; the till's retry under the same key must
    be looked at afresh, not answered from a stored 404 for 24 hours."""
    merchant = uuid.uuid4()
    body = {
        "order_id": str(uuid.uuid4()),
        "method": "cash",
        "amount": {"amount": 1250, "currency": "CNY"},
    }
    key = f"pay-{uuid.uuid4().hex}"
    for _ in range(2):
        response = await harness.pay(merchant, body, key=key)
        assert response.status_code == 404
        assert response.json()["code"] == "order_not_found"
        assert "idempotent-replayed" not in response.headers
