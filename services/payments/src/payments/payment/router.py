"""HTTP endpoints of payments, refunds and provider notifications."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request

from payments.deps import ProvidersDep, SettingsDep
from payments.models import Payment
from payments.payment import service
from payments.payment.schemas import (
    NotificationAck,
    PaymentCreate,
    PaymentOut,
    RefundCreate,
    RefundOut,
)
from payments.providers.base import NotificationRejected
from servicekit.auth import Principal, PrincipalDep, require, scoped
from servicekit.errors import Problem, problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(route_class=IdempotentRoute, tags=["payments"])

TakePayments = Annotated[Principal, Depends(require("orders:write"))]
ApproveRefunds = Annotated[Principal, Depends(require("refunds:approve"))]


@router.post(
    "/v1/payments",
    status_code=201,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 401, 403, 404, 409, 422, 502),
    summary="Take a payment for an order",
)
async def create_payment(
    body: PaymentCreate,
    session: SessionDep,
    principal: TakePayments,
    providers: ProvidersDep,
    settings: SettingsDep,
) -> PaymentOut:
    payment = await service.create_payment(
        session, principal, body, providers=providers, settings=settings
    )
    return PaymentOut.of(payment)


@router.get(
    "/v1/payments/{payment_id}",
    responses=problem_responses(401, 404),
    summary="One payment",
)
async def get_payment(
    payment_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> PaymentOut:
    return PaymentOut.of(await service.get_payment(session, principal, payment_id))


@router.get("/v1/payments", responses=problem_responses(400, 401), summary="Payments of an order")
async def list_payments(
    session: SessionDep,
    principal: PrincipalDep,
    page: CursorParamsDep,
    order_id: Annotated[uuid.UUID, Query()],
) -> Page[PaymentOut]:
    stmt = scoped(sa.select(Payment), Payment, principal).where(Payment.order_id == order_id)
    return await paginate(
        session, stmt, order_by=(Payment.created_at, Payment.id), params=page, map=PaymentOut.of
    )


@router.post(
    "/v1/payments/{payment_id}/refunds",
    status_code=201,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 401, 403, 404, 409, 422, 502),
    summary="Refund a payment (in full or in part) to its original route",
)
async def refund_payment(
    payment_id: uuid.UUID,
    body: RefundCreate,
    session: SessionDep,
    principal: ApproveRefunds,
    providers: ProvidersDep,
) -> RefundOut:
    refund = await service.refund_payment(session, principal, payment_id, body, providers=providers)
    return RefundOut.of(refund)


@router.get(
    "/v1/payments/{payment_id}/refunds",
    responses=problem_responses(401, 404),
    summary="Refunds of a payment, oldest first",
)
async def list_refunds(
    payment_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[RefundOut]:
    payment = await service.get_payment(session, principal, payment_id)
    return [RefundOut.of(r) for r in await service.list_refunds(session, payment)]


@router.post(
    "/v1/providers/{provider}/notify",
    responses=problem_responses(400, 401, 404),
    summary="A provider's signed notification of a payment outcome",
    tags=["providers"],
)
async def provider_notification(
    provider: str, request: Request, session: SessionDep, providers: ProvidersDep
) -> NotificationAck:
    adapter = providers.named(provider)
    raw = await request.body()
    try:
        notification = adapter.parse_notification(raw, request.headers, now=datetime.now(UTC))
    except NotificationRejected as exc:
        raise Problem(exc.status, exc.code, exc.detail) from None
    result = await service.apply_notification(session, adapter.name, notification)
    return NotificationAck(result=result)
