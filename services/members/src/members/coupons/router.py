"""HTTP endpoints of coupon templates and of members' coupons."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from members.coupons import service
from members.coupons.models import Coupon, CouponTemplate
from members.coupons.schemas import (
    BulkIssue,
    BulkIssueOut,
    CouponOut,
    IssueCoupon,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
    VoidCoupon,
)
from members.member.service import get_member
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(route_class=IdempotentRoute, tags=["coupons"])

ManageCoupons = Annotated[Principal, Depends(require("coupons:manage"))]
CouponState = Literal["issued", "reserved", "redeemed", "voided"]


@router.post(
    "/v1/coupon-templates",
    status_code=201,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 404, 422),
    summary="Define a coupon template",
)
async def create_template(
    body: TemplateCreate, session: SessionDep, principal: ManageCoupons
) -> TemplateOut:
    return TemplateOut.of(await service.create_template(session, principal, body))


@router.get(
    "/v1/coupon-templates",
    responses=problem_responses(400, 401),
    summary="Coupon templates valid in the caller's stores, oldest first",
)
async def list_templates(
    session: SessionDep, principal: PrincipalDep, page: CursorParamsDep
) -> Page[TemplateOut]:
    return await paginate(
        session,
        service.templates_query(principal),
        order_by=(CouponTemplate.created_at, CouponTemplate.id),
        params=page,
        map=TemplateOut.of,
    )


@router.get(
    "/v1/coupon-templates/{template_id}",
    responses=problem_responses(401, 404),
    summary="One coupon template",
)
async def get_template(
    template_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> TemplateOut:
    return TemplateOut.of(await service.get_template(session, principal, template_id))


@router.patch(
    "/v1/coupon-templates/{template_id}",
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Rename, limit, flag or deactivate a template (terms are fixed)",
)
async def update_template(
    template_id: uuid.UUID, body: TemplateUpdate, session: SessionDep, principal: ManageCoupons
) -> TemplateOut:
    template = await service.update_template(session, principal, template_id, body)
    return TemplateOut.of(template)


@router.post(
    "/v1/coupon-templates/{template_id}/issue",
    status_code=201,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Issue a coupon to one member",
)
async def issue_coupon(
    template_id: uuid.UUID, body: IssueCoupon, session: SessionDep, principal: ManageCoupons
) -> CouponOut:
    coupon = await service.issue_by_hand(session, principal, template_id, body.member_id)
    return CouponOut.of(coupon)


@router.post(
    "/v1/coupon-templates/{template_id}/issue-to-tag",
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Issue a coupon to every member holding a tag, once per batch key",
)
async def issue_to_tag(
    template_id: uuid.UUID, body: BulkIssue, session: SessionDep, principal: ManageCoupons
) -> BulkIssueOut:
    return await service.issue_to_tag(session, principal, template_id, body.tag, body.batch_key)


@router.get(
    "/v1/members/{member_id}/coupons",
    responses=problem_responses(400, 401, 404),
    summary="A member's coupons, newest first",
)
async def member_coupons(
    member_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: CursorParamsDep,
    state: Annotated[CouponState | None, Query()] = None,
) -> Page[CouponOut]:
    member = await get_member(session, principal.merchant_id, member_id)
    stmt = service.member_coupons_query(principal.merchant_id, member.id)
    if state is not None:
        stmt = stmt.where(Coupon.state == state)
    return await paginate(
        session,
        stmt,
        order_by=(Coupon.issued_at, Coupon.id),
        params=page,
        map=CouponOut.of,
        descending=True,
    )


@router.get(
    "/v1/members/{member_id}/coupons/{coupon_id}",
    responses=problem_responses(401, 404),
    summary="One coupon of a member",
)
async def member_coupon(
    member_id: uuid.UUID, coupon_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> CouponOut:
    return CouponOut.of(
        await service.get_coupon(session, principal.merchant_id, member_id, coupon_id)
    )


@router.post(
    "/v1/members/{member_id}/coupons/{coupon_id}/void",
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Void an unused coupon",
)
async def void_coupon(
    member_id: uuid.UUID,
    coupon_id: uuid.UUID,
    body: VoidCoupon,
    session: SessionDep,
    principal: ManageCoupons,
) -> CouponOut:
    coupon = await service.void(session, principal, member_id, coupon_id, body.reason)
    return CouponOut.of(coupon)
