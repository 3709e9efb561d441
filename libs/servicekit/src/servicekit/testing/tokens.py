"""Tokens for tests of a service without identity running: signed with a local key and
verified through the same ``TokenVerifier`` a service uses in production."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from servicekit.app import TOKEN_AUDIENCE, TOKEN_ISSUER
from servicekit.auth import (
    Principal,
    Role,
    StaticKeySource,
    TokenVerifier,
    principal_claims,
    public_jwks,
    sign_token,
)


def static_verifier(*keys: Any) -> TokenVerifier:
    """A verifier that trusts exactly ``keys`` (as identity's JWKS would publish them)."""
    return TokenVerifier(
        StaticKeySource(public_jwks(list(keys))), issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE
    )


def bearer_headers(
    key: Any,
    merchant_id: uuid.UUID,
    *,
    scopes: frozenset[str],
    store_ids: frozenset[uuid.UUID] | None = None,
    role: Role = Role.STORE_MANAGER,
    subject: uuid.UUID | None = None,
    ttl: timedelta = timedelta(minutes=10),
) -> dict[str, str]:
    """An ``Authorization`` header for a staff member of ``merchant_id``.

    Without ``subject`` the staff member is the same for one merchant and role, as for a till
    that signs in again: idempotency keys are scoped to the staff member.
    """
    now = datetime.now(UTC)
    principal = Principal(
        subject=subject or uuid.uuid5(merchant_id, role.value),
        merchant_id=merchant_id,
        role=role,
        scopes=scopes,
        store_ids=store_ids,
        token_id=uuid.uuid4().hex,
        expires_at=now + ttl,
    )
    claims = principal_claims(
        principal, issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE, issued_at=now
    )
    return {"Authorization": f"Bearer {sign_token(key, claims)}"}
