"""Event consumers of coupons: each redemption step orders announces."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventEnvelope
from contracts.events.orders import CouponRedeemed, CouponReleased, CouponReserved
from members.coupons import service
from servicekit.consumer import HandlerRegistry

handlers = HandlerRegistry()


@handlers.on("orders.coupon.reserved")
async def coupon_reserved(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.apply_redemption_step(
        session, envelope, CouponReserved.model_validate(envelope.payload)
    )


@handlers.on("orders.coupon.redeemed")
async def coupon_redeemed(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.apply_redemption_step(
        session, envelope, CouponRedeemed.model_validate(envelope.payload)
    )


@handlers.on("orders.coupon.released")
async def coupon_released(session: AsyncSession, envelope: EventEnvelope) -> None:
    await service.apply_redemption_step(
        session, envelope, CouponReleased.model_validate(envelope.payload)
    )
