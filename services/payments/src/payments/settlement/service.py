"""Fee rates and settlement accounts of a merchant."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from payments.models import MerchantSettlementConfig, SettlementAccount
from servicekit.errors import VersionMismatch


async def fee_rate_bps(session: AsyncSession, merchant_id: uuid.UUID, default: int) -> int:
    rate = await session.scalar(
        sa.select(MerchantSettlementConfig.fee_rate_bps).where(
            MerchantSettlementConfig.merchant_id == merchant_id
        )
    )
    return default if rate is None else rate


async def get_config(
    session: AsyncSession, merchant_id: uuid.UUID
) -> MerchantSettlementConfig | None:
    return await session.get(MerchantSettlementConfig, merchant_id)


async def set_fee_rate(
    session: AsyncSession, merchant_id: uuid.UUID, rate_bps: int, expected_version: int | None
) -> MerchantSettlementConfig:
    """Set the rate; ``expected_version`` (when given) must match the stored version (0 when
    none is stored yet)."""
    current = await session.get(MerchantSettlementConfig, merchant_id, with_for_update=True)
    current_version = current.version if current is not None else 0
    if expected_version is not None and expected_version != current_version:
        raise VersionMismatch(current_version=current_version)
    if current is None:
        await session.execute(
            pg_insert(MerchantSettlementConfig)
            .values(merchant_id=merchant_id, fee_rate_bps=rate_bps, version=1)
            .on_conflict_do_nothing()
        )
        created = await session.get(MerchantSettlementConfig, merchant_id, populate_existing=True)
        if created is None or created.version != 1 or created.fee_rate_bps != rate_bps:
            raise VersionMismatch(current_version=created.version if created else None)
        return created
    current.fee_rate_bps = rate_bps
    current.version += 1
    await session.flush()
    return current


async def active_account(session: AsyncSession, merchant_id: uuid.UUID) -> SettlementAccount | None:
    result: SettlementAccount | None = await session.scalar(
        sa.select(SettlementAccount).where(
            SettlementAccount.merchant_id == merchant_id, SettlementAccount.active.is_(True)
        )
    )
    return result


async def register_account(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    *,
    kind: str,
    institution: str,
    account_number: str,
    holder_name: str,
) -> SettlementAccount:
    """Register the merchant's settlement account; the previous one stops receiving new
    payments (payments already taken keep the account they settle to)."""
    # Serializes two registrations of one merchant so the one-active index never trips.
    await session.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"settlement:{merchant_id}")))
    )
    await session.execute(
        sa.update(SettlementAccount)
        .where(SettlementAccount.merchant_id == merchant_id, SettlementAccount.active.is_(True))
        .values(active=False, deactivated_at=sa.func.now())
    )
    account = SettlementAccount(
        merchant_id=merchant_id,
        kind=kind,
        institution=institution,
        account_number=account_number,
        holder_name=holder_name,
        active=True,
    )
    session.add(account)
    await session.flush()
    await session.refresh(account)
    return account


async def list_accounts(session: AsyncSession, merchant_id: uuid.UUID) -> list[SettlementAccount]:
    rows = await session.scalars(
        sa.select(SettlementAccount)
        .where(SettlementAccount.merchant_id == merchant_id)
        .order_by(SettlementAccount.created_at.desc(), SettlementAccount.id.desc())
    )
    return list(rows)
