"""The caller as identity sees it: the verified token, re-checked against the database.

Other services trust a token's claims until it expires. Identity holds the accounts, so it
does better: a disabled account, a session revoked by a password reset or a role changed a
minute ago takes effect on identity's own endpoints at once. Role, scopes and stores come
from the database, not from the token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.ids import id_timestamp_ms
from identity.context import Identity, IdentityDep
from identity.staff.models import Staff
from identity.stores.models import Store
from servicekit.auth import PrincipalDep, Role
from servicekit.errors import Forbidden, Unauthorized
from servicekit.uow import SessionDep


@dataclass(frozen=True)
class Actor:
    staff: Staff
    role: Role
    scopes: frozenset[str]
    #: Stores the caller may see; ``None``: every store of the merchant.
    store_ids: frozenset[uuid.UUID] | None
    region_ids: frozenset[uuid.UUID]

    @property
    def id(self) -> uuid.UUID:
        return self.staff.id

    @property
    def merchant_id(self) -> uuid.UUID:
        return self.staff.merchant_id

    @property
    def super_admin(self) -> bool:
        return self.staff.super_admin

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(
                f"This action requires the '{scope}' permission.", missing_permission=scope
            )

    def can_see_store(self, store_id: uuid.UUID | None) -> bool:
        if self.store_ids is None:
            return True
        return store_id is not None and store_id in self.store_ids


async def store_scope(session: AsyncSession, staff: Staff) -> frozenset[uuid.UUID] | None:
    """The stores a staff member reaches: all (``None``), their regions' stores, or theirs."""
    role = Role(staff.role)
    if role is Role.HQ_ADMIN:
        return None
    if role is Role.REGIONAL_MANAGER:
        if not staff.region_ids:
            return frozenset()
        rows = await session.scalars(
            sa.select(Store.id).where(
                Store.merchant_id == staff.merchant_id, Store.region_id.in_(staff.region_ids)
            )
        )
        return frozenset(rows.all())
    return frozenset({staff.store_id}) if staff.store_id is not None else frozenset()


async def load_actor(session: AsyncSession, staff: Staff) -> Actor:
    return Actor(
        staff=staff,
        role=Role(staff.role),
        scopes=frozenset(staff.scopes),
        store_ids=await store_scope(session, staff),
        region_ids=frozenset(staff.region_ids),
    )


async def current_actor(
    principal: PrincipalDep, session: SessionDep, identity: IdentityDep
) -> Actor:
    staff = await session.get(Staff, principal.subject)
    if staff is None or staff.merchant_id != principal.merchant_id or staff.status != "active":
        raise Unauthorized("This account cannot sign in.", code="session_revoked")
    if staff.sessions_valid_after is not None:
        valid_after_ms = int(staff.sessions_valid_after.timestamp() * 1000)
        if issued_at_ms(principal.token_id, principal.expires_at, identity) < valid_after_ms:
            raise Unauthorized("This session was signed out.", code="session_revoked")
    return await load_actor(session, staff)


def issued_at_ms(token_id: str, expires_at: datetime, identity: Identity) -> int:
    """When a token was issued, in milliseconds: identity's token ids are UUIDv7, whose
    timestamp is finer than the whole seconds of ``iat``."""
    try:
        return id_timestamp_ms(uuid.UUID(token_id))
    except ValueError:
        return int((expires_at - identity.access_ttl).timestamp() * 1000)


ActorDep = Annotated[Actor, Depends(current_actor)]
