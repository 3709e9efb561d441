"""NUL and lone surrogates in body, path and query: 422 ``invalid_character``, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

from servicekit.testing.inputs import assert_unstorable_refused


async def test_unstorable_input_is_422(harness: Any) -> None:
    await assert_unstorable_refused(
        harness.client,
        post="/v1/orders",
        body={"id": str(uuid.uuid4()), "channel": "pos", "lines": []},
        field="table",
        get_by_path="/v1/orders/{}",
        listing="/v1/orders",
        headers={**harness.auth(uuid.uuid4()), "Idempotency-Key": uuid.uuid4().hex},
    )
