"""NUL and lone surrogates in body, path and query: 422 ``invalid_character``, never a 500."""

from __future__ import annotations

import uuid

from servicekit.testing.inputs import assert_unstorable_refused

from .conftest import Harness


async def test_unstorable_input_is_422(harness: Harness) -> None:
    await assert_unstorable_refused(
        harness.client,
        post="/v1/members",
        body={"phone": "+8613800138000"},
        field="name",
        get_by_path="/v1/members/{}",
        listing="/v1/members",
        headers=harness.token(uuid.uuid4()),
    )
