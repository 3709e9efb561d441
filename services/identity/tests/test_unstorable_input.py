"""NUL and lone surrogates in body, path and query: 422 ``invalid_character``, never a 500."""

from __future__ import annotations

import httpx

from servicekit.testing.inputs import assert_unstorable_refused


async def test_unstorable_input_is_422(client: httpx.AsyncClient) -> None:
    await assert_unstorable_refused(
        client,
        post="/v1/merchants",
        body={"phone": "+8613800138000"},
        field="name",
        get_by_path="/v1/staff/{}",
        listing="/v1/stores",
    )
