"""HTTP endpoints of payments, refunds and provider notifications."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Depends, Header, Request

from payments.deps import OrderSourceDep, ProvidersDep, SettingsDep
from payments.figures.filters import PaymentFiltersDep
from payments.models import Payment
from payments.payment import refunds, service
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
from servicekit.uow import DatabaseDep, SessionDep

router = APIRouter(route_class=IdempotentRoute, tags=["payments"])


async def _payment_taker(body: PaymentCreate, principal: PrincipalDep) -> Principal:
    """A sale needs ``orders:write``; a recharge ``stored_value:recharge``. A dependency, so
    the rights are checked before an idempotent answer could be replayed."""
    scope = "stored_value:recharge" if body.purpose == "stored_value_recharge" else "orders:write"
    return await require(scope)(principal)


PaymentTaker = Annotated[Principal, Depends(_payment_taker)]
ApproveRefunds = Annotated[Principal, Depends(require("refunds:approve"))]
# Required by the Idempotency dependency before the route runs; read here because the ids of
# what a request creates are derived from it, so a retry finds what the first attempt made.
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", include_in_schema=False)]


@router.post(
    "/v1/payments",
    status_code=201,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 401, 403, 404, 409, 422, 502, 503),
    summary="Take a payment for an order, or a member's stored-value recharge",
)
async def create_payment(
    body: PaymentCreate,
    session: SessionDep,
    database: DatabaseDep,
    principal: PaymentTaker,
    providers: ProvidersDep,
    settings: SettingsDep,
    orders: OrderSourceDep,
    key: IdempotencyKey,
    background: BackgroundTasks,
) -> PaymentOut:
    payment, opened = await service.create_payment(
        database,
        session,
        principal,
        body,
        idempotency_key=key,
        providers=providers,
        settings=settings,
        orders=orders,
    )
    if opened:
        # Runs after the response, hence after this request's transaction committed.
        background.add_task(refunds.carry_out_quietly, database, providers, opened)
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


@router.get(
    "/v1/payments",
    responses=problem_responses(400, 401, 404, 422),
    summary="Payments, oldest first: of an order, a store, a method, a status, business days",
)
async def list_payments(
    session: SessionDep,
    principal: PrincipalDep,
    page: CursorParamsDep,
    filters: PaymentFiltersDep,
) -> Page[PaymentOut]:
    """Every filter is optional and they combine; ``business_day_from``/``business_day_to``
    select payments by their order's business day (422 ``invalid_range`` when reversed)."""
    stmt = filters.apply(scoped(sa.select(Payment), Payment, principal), principal)
    return await paginate(
        session, stmt, order_by=(Payment.created_at, Payment.id), params=page, map=PaymentOut.of
    )


@router.post(
    "/v1/payments/{payment_id}/refunds",
    status_code=201,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 401, 403, 404, 409, 422, 502, 503),
    summary="Refund a payment (in full or in part) to its original route",
)
async def refund_payment(
    payment_id: uuid.UUID,
    body: RefundCreate,
    session: SessionDep,
    database: DatabaseDep,
    principal: ApproveRefunds,
    providers: ProvidersDep,
    orders: OrderSourceDep,
    key: IdempotencyKey,
) -> RefundOut:
    refund = await refunds.refund_payment(
        database,
        session,
        principal,
        payment_id,
        body,
        idempotency_key=key,
        providers=providers,
        orders=orders,
    )
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
    return [RefundOut.of(r) for r in await refunds.list_refunds(session, payment)]


@router.post(
    "/v1/providers/{provider}/notify",
    responses=problem_responses(400, 401, 404),
    summary="A provider's signed notification of a payment outcome",
    tags=["providers"],
)
async def provider_notification(
    provider: str,
    request: Request,
    session: SessionDep,
    database: DatabaseDep,
    providers: ProvidersDep,
    background: BackgroundTasks,
) -> NotificationAck:
    adapter = providers.named(provider)
    raw = await request.body()
    try:
        notification = adapter.parse_notification(raw, request.headers, now=datetime.now(UTC))
    except NotificationRejected as exc:
        raise Problem(exc.status, exc.code, exc.detail) from None
    result, opened = await service.apply_notification(session, adapter.name, notification)
    if opened:
        # Money the order cannot take goes back once this transaction committed; if this
        # process dies first, the reconciler carries the pending refund out.
        background.add_task(refunds.carry_out_quietly, database, providers, opened)
    return NotificationAck(result=result)
