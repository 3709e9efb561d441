"""A stored member creation is replayed only to a caller who could have made it."""

from __future__ import annotations

import uuid

from servicekit.auth import Role
from servicekit.testing.tokens import bearer_headers

from .conftest import Harness


async def test_a_cashier_without_members_write_cannot_replay_a_member_creation(
    harness: Harness,
) -> None:
    merchant = uuid.uuid4()
    key = {"Idempotency-Key": f"member-{uuid.uuid4().hex}"}
    body = {"phone": "+8613800138123", "name": "Li Lei"}
    created = await harness.client.post(
        "/v1/members", json=body, headers={**harness.token(merchant), **key}
    )
    assert created.status_code == 201, created.text
    replay = await harness.client.post(
        "/v1/members", json=body, headers={**harness.token(merchant), **key}
    )
    assert replay.headers["idempotent-replayed"] == "true"

    cashier = bearer_headers(harness.key, merchant, scopes=frozenset(), role=Role.CASHIER)
    # The staff member who created it, signed in again with fewer rights.
    narrowed = harness.token(merchant, scopes=frozenset())
    for headers in (cashier, narrowed):
        refused = await harness.client.post("/v1/members", json=body, headers={**headers, **key})
        assert refused.status_code == 403, refused.text
        assert "idempotent-replayed" not in refused.headers
        assert "138" not in refused.text
