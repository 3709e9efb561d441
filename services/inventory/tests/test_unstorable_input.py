"""NUL and lone surrogates in body, path and query: 422 ``invalid_character``, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

from servicekit.testing.inputs import assert_unstorable_refused


async def test_unstorable_input_is_422(harness: Any) -> None:
    await assert_unstorable_refused(
        harness.client,
        post="/v1/products",
        body={"sku": "TEA-1", "price": {"amount": 100, "currency": "CNY"}},
        field="name",
        get_by_path="/v1/products/by-barcode/{}",
        listing=f"/v1/stores/{uuid.uuid4()}/stock",
        headers=harness.auth(uuid.uuid4()),
    )
