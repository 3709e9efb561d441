"""Concurrency rules every read-modify-write in identity follows.

A change reads its row with ``SELECT ... FOR NO KEY UPDATE``, so two writers queue instead of
both building on the same version, while inserts that merely reference the row (audit
entries) are neither held up nor deadlocked by it. It names the version the client read: a
missing one is refused with 428 ``version_required``, a stale one with 409
``version_mismatch``. Rules that span rows
of one merchant (at least one active super admin, one open handover) lock the merchant's row
first, which serialises them per merchant.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from identity.merchants.models import Merchant
from servicekit.errors import Problem, VersionMismatch


def version_required() -> Problem:
    return Problem(
        428,
        "version_required",
        "Send the version you read (the resource's `version`); changes without it are refused.",
    )


def check_version(current: int, given: int | None) -> None:
    if given is None:
        raise version_required()
    if given != current:
        raise VersionMismatch(current_version=current)


async def lock_merchant(session: AsyncSession, merchant_id: uuid.UUID) -> None:
    """Hold the merchant's row until commit: merchant-wide rules are checked one at a time."""
    await session.execute(
        sa.select(Merchant.id).where(Merchant.id == merchant_id).with_for_update(key_share=True)
    )
