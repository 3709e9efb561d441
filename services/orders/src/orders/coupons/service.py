"""Coupon redemption at checkout: reserved when an order is placed, redeemed when it is paid,
released when it is cancelled or refunded in full.

Each step is one conditional ``UPDATE`` of the coupon's row in the order's transaction, with
its ``orders.coupon.*`` event written to the outbox in the same transaction. Two orders
placing one coupon at the same moment both reach the ``UPDATE ... WHERE status =
'available'``: the second waits for the first's row lock, re-reads the row when it commits,
finds it reserved and changes nothing, so its order is refused (409 ``coupon_unavailable``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events.members import CouponIssued
from contracts.events.orders import CouponRedeemed, CouponReleased, CouponReserved
from contracts.money import Money
from contracts.registry import make_envelope
from orders.models import Coupon, Order
from orders.promotions.engine import CouponInput
from servicekit.errors import Conflict
from servicekit.outbox import add_event

PRODUCER = "orders"


async def _emit(session: AsyncSession, order: Order, coupon_id: uuid.UUID, body: BaseModel) -> None:
    # Keyed by the coupon: its steps reach consumers in order on one partition.
    await add_event(
        session,
        make_envelope(
            body,
            producer=PRODUCER,
            aggregate_id=coupon_id,
            merchant_id=order.merchant_id,
            store_id=order.store_id,
        ),
    )


def _unavailable(row: Coupon, order_id: uuid.UUID | None) -> str | None:
    if order_id is not None:
        # Recomputing an order: the coupon priced it, whatever happened to it since.
        return None
    if row.status == "redeemed":
        return "coupon_used"
    if row.status == "reserved":
        return "coupon_unavailable"
    if row.voided_at is not None:
        return "coupon_voided"
    return None


@dataclass(frozen=True, slots=True)
class Loaded:
    """Coupons for the engine, in the order asked; ids the replica does not know (another
    merchant's coupon is unknown too); coupons known only by their void."""

    inputs: list[CouponInput]
    unknown: list[uuid.UUID]
    voided: list[uuid.UUID]


async def load_inputs(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    coupon_ids: list[uuid.UUID],
    *,
    order_id: uuid.UUID | None = None,
) -> Loaded:
    """The engine's inputs for ``coupon_ids``. With ``order_id`` (recomputing that order)
    the coupons' redemption state is not a reason to refuse them."""
    loaded = Loaded([], [], [])
    if not coupon_ids:
        return loaded
    rows = {
        row.coupon_id: row
        for row in (
            await session.execute(
                sa.select(Coupon).where(
                    Coupon.merchant_id == merchant_id, Coupon.coupon_id.in_(coupon_ids)
                )
            )
        ).scalars()
    }
    for coupon_id in coupon_ids:
        row = rows.get(coupon_id)
        if row is None:
            loaded.unknown.append(coupon_id)
        elif row.terms is None:
            loaded.voided.append(coupon_id)
        else:
            terms = CouponIssued.model_validate(row.terms)
            loaded.inputs.append(CouponInput(terms, _unavailable(row, order_id)))
    return loaded


async def reserve(
    session: AsyncSession, order: Order, coupon_id: uuid.UUID, member_id: uuid.UUID, amount: int
) -> None:
    """Hold ``coupon_id`` for ``order`` or answer 409 ``coupon_unavailable``."""
    held = (
        await session.execute(
            sa.update(Coupon)
            .where(
                Coupon.merchant_id == order.merchant_id,
                Coupon.coupon_id == coupon_id,
                Coupon.status == "available",
                Coupon.voided_at.is_(None),
                Coupon.terms.is_not(None),
            )
            .values(
                status="reserved",
                order_id=order.id,
                store_id=order.store_id,
                currency=order.currency,
                discount=amount,
                sequence=Coupon.sequence + 1,
                updated_at=sa.func.now(),
            )
            .returning(Coupon.sequence)
        )
    ).scalar_one_or_none()
    if held is None:
        raise Conflict(
            "The coupon was just taken by another order or withdrawn.",
            code="coupon_unavailable",
            coupon_id=str(coupon_id),
        )
    await _emit(
        session,
        order,
        coupon_id,
        CouponReserved(
            coupon_id=coupon_id,
            member_id=member_id,
            order_id=order.id,
            store_id=order.store_id,
            discount=Money.of(amount, order.currency),
            sequence=held,
        ),
    )


async def _step(
    session: AsyncSession,
    order: Order,
    *,
    from_status: str,
    to_status: str,
) -> list[Coupon]:
    release = to_status == "available"
    rows = await session.execute(
        sa.update(Coupon)
        .where(
            Coupon.merchant_id == order.merchant_id,
            Coupon.order_id == order.id,
            Coupon.status == from_status,
        )
        .values(
            status=to_status,
            sequence=Coupon.sequence + 1,
            updated_at=sa.func.now(),
            **({"order_id": None, "store_id": None, "discount": None} if release else {}),
        )
        .returning(Coupon)
        .execution_options(synchronize_session=False)
    )
    return sorted(rows.scalars(), key=lambda c: str(c.coupon_id))


async def redeem_for_order(session: AsyncSession, order: Order) -> None:
    """The order was paid: the coupons it holds are used."""
    for coupon in await _step(session, order, from_status="reserved", to_status="redeemed"):
        await _emit(
            session,
            order,
            coupon.coupon_id,
            CouponRedeemed(
                coupon_id=coupon.coupon_id,
                member_id=coupon.member_id,
                order_id=order.id,
                store_id=order.store_id,
                discount=Money.of(coupon.discount or 0, coupon.currency or order.currency),
                sequence=coupon.sequence,
            ),
        )


async def release_for_order(
    session: AsyncSession, order: Order, reason: Literal["cancelled", "refunded"]
) -> None:
    """The order was cancelled (its coupons were held) or refunded in full (they were used):
    the coupons can be used again."""
    from_status = "reserved" if reason == "cancelled" else "redeemed"
    for coupon in await _step(session, order, from_status=from_status, to_status="available"):
        await _emit(
            session,
            order,
            coupon.coupon_id,
            CouponReleased(
                coupon_id=coupon.coupon_id,
                member_id=coupon.member_id,
                order_id=order.id,
                reason=reason,
                sequence=coupon.sequence,
            ),
        )
