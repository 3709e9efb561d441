"""NUL and lone surrogates in body, path and query: 422 ``invalid_character``, never a 500."""

from __future__ import annotations

import uuid

from servicekit.testing.inputs import assert_unstorable_refused

from .conftest import Harness


async def test_unstorable_input_is_422(harness: Harness) -> None:
    await assert_unstorable_refused(
        harness.client,
        post="/v1/payments",
        body={"order_id": str(uuid.uuid4()), "amount": {"amount": 100, "currency": "CNY"}},
        field="method",
        get_by_path="/v1/payments/{}",
        listing="/v1/payments",
        headers={**harness.token(uuid.uuid4()), "Idempotency-Key": uuid.uuid4().hex},
    )
