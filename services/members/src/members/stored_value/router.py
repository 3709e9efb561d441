"""HTTP endpoints of stored value: bonus rules, recharge previews, a member's balance, ledger
and recharges. Money moves only through payments (see :mod:`members.stored_value.service`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, cast

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import aliased

from contracts.money import Money
from members.member.service import get_member
from members.stored_value import service
from members.stored_value.models import StoredValueEntry
from members.stored_value.schemas import (
    AdjustmentCreate,
    BonusRuleCreate,
    BonusRuleOut,
    BonusRuleUpdate,
    LedgerEntryOut,
    LedgerKind,
    PointsRateOut,
    PointsRateUpdate,
    RechargeOut,
    RechargePreview,
    StoredValueBalance,
    StoredValueLedgerPage,
)
from servicekit.auth import Principal, PrincipalDep, require, scoped_to_merchant
from servicekit.errors import FieldError, ValidationFailed, problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.uow import SessionDep

router = APIRouter(route_class=IdempotentRoute, tags=["stored value"])

ManageSettings = Annotated[Principal, Depends(require("settings:manage"))]


def _check_rule(body: BonusRuleCreate) -> None:
    errors = []
    if body.threshold.currency != body.bonus.currency:
        errors.append(FieldError("bonus.currency", "currency_mismatch", "Not the threshold's."))
    if body.threshold.amount <= 0:
        errors.append(FieldError("threshold.amount", "out_of_range", "Must be positive."))
    if body.bonus.amount < 0:
        errors.append(FieldError("bonus.amount", "out_of_range", "Must not be negative."))
    if errors:
        raise ValidationFailed(errors)


@router.get(
    "/v1/stored-value/bonus-rules",
    responses=problem_responses(401),
    summary="Recharge bonus tiers, by currency and threshold",
)
async def list_bonus_rules(session: SessionDep, principal: PrincipalDep) -> list[BonusRuleOut]:
    return [BonusRuleOut.of(r) for r in await service.bonus_rules(session, principal.merchant_id)]


@router.post(
    "/v1/stored-value/bonus-rules",
    status_code=201,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(401, 403, 409, 422),
    summary="Add a recharge bonus tier (applies to recharges credited from now on)",
)
async def create_bonus_rule(
    body: BonusRuleCreate, session: SessionDep, principal: ManageSettings
) -> BonusRuleOut:
    _check_rule(body)
    rule = await service.create_bonus_rule(
        session, principal.merchant_id, body.threshold, body.bonus
    )
    return BonusRuleOut.of(rule)


@router.get(
    "/v1/stored-value/bonus-rules/{rule_id}",
    responses=problem_responses(401, 404),
    summary="One bonus tier",
)
async def get_bonus_rule(
    rule_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> BonusRuleOut:
    return BonusRuleOut.of(await service.get_bonus_rule(session, principal.merchant_id, rule_id))


@router.put(
    "/v1/stored-value/bonus-rules/{rule_id}",
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Change a bonus tier (optimistic concurrency on version)",
)
async def update_bonus_rule(
    rule_id: uuid.UUID, body: BonusRuleUpdate, session: SessionDep, principal: ManageSettings
) -> BonusRuleOut:
    _check_rule(body)
    rule = await service.update_bonus_rule(
        session,
        principal.merchant_id,
        rule_id,
        threshold=body.threshold,
        bonus=body.bonus,
        version=body.version,
    )
    return BonusRuleOut.of(rule)


@router.delete(
    "/v1/stored-value/bonus-rules/{rule_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409),
    summary="Remove a bonus tier",
)
async def delete_bonus_rule(
    rule_id: uuid.UUID,
    session: SessionDep,
    principal: ManageSettings,
    version: Annotated[int | None, Query(ge=1, description="The version read.")] = None,
) -> Response:
    await service.delete_bonus_rule(session, principal.merchant_id, rule_id, version=version)
    return Response(status_code=204)


@router.get(
    "/v1/stored-value/points-rate",
    responses=problem_responses(401),
    summary="Whether points pay as a tender, and at what rate",
)
async def get_points_rate(session: SessionDep, principal: PrincipalDep) -> PointsRateOut:
    rate = await service.points_rate(session, principal.merchant_id)
    if rate is None:
        return PointsRateOut(accepted=False, points_per_unit=None, version=0)
    return PointsRateOut(accepted=True, points_per_unit=rate.points_per_unit, version=rate.version)


@router.put(
    "/v1/stored-value/points-rate",
    responses=problem_responses(401, 403, 409, 422),
    summary="Let points pay, at this rate (applies to payments debited from now on)",
)
async def put_points_rate(
    body: PointsRateUpdate, session: SessionDep, principal: ManageSettings
) -> PointsRateOut:
    rate = await service.set_points_rate(
        session,
        principal.merchant_id,
        points_per_unit=body.points_per_unit,
        version=body.version,
    )
    return PointsRateOut(accepted=True, points_per_unit=rate.points_per_unit, version=rate.version)


@router.get(
    "/v1/stored-value/recharge-preview",
    responses=problem_responses(401, 422),
    summary="What a recharge of this amount would credit (principal and bonus)",
)
async def recharge_preview(
    session: SessionDep,
    principal: PrincipalDep,
    amount: Annotated[int, Query(gt=0, le=10**12, description="Minor units.")],
    currency: Annotated[str, Query(min_length=3, max_length=3)] = "CNY",
) -> RechargePreview:
    try:
        money = Money.of(amount, currency)
    except ValueError:
        raise ValidationFailed(
            [FieldError("currency", "invalid_currency", "Unknown currency.")]
        ) from None
    bonus, rule = await service.bonus_for(session, principal.merchant_id, money)
    return RechargePreview(
        amount=money,
        bonus=Money.of(bonus, currency),
        total=Money.of(amount + bonus, currency),
        bonus_rule_id=rule.id if rule is not None else None,
    )


@router.get(
    "/v1/members/{member_id}/stored-value",
    responses=problem_responses(400, 401, 404),
    summary="A member's stored-value balance (principal and bonus) and ledger, newest first",
)
async def stored_value_ledger(
    member_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    page: CursorParamsDep,
    kind: LedgerKind | None = None,
) -> StoredValueLedgerPage:
    member = await get_member(session, principal.merchant_id, member_id)
    # Accounts are merchant-wide, like members: a cashier of any store sees the whole ledger.
    stmt = scoped_to_merchant(
        sa.select(StoredValueEntry), StoredValueEntry, principal.merchant_id
    ).where(StoredValueEntry.member_id == member.id)
    if kind is not None:
        stmt = stmt.where(StoredValueEntry.kind == kind)
    listing = await paginate(
        session,
        stmt,
        order_by=(StoredValueEntry.created_at, StoredValueEntry.id),
        params=page,
        map=LedgerEntryOut.of,
        descending=True,
    )
    balance = await service.balance_of(session, member)
    account = None
    if balance is not None:
        account = StoredValueBalance(
            principal=Money.of(balance.principal, balance.currency),
            bonus=Money.of(balance.bonus, balance.currency),
            balance=Money.of(balance.total, balance.currency),
        )
    return StoredValueLedgerPage(
        items=listing.items, next_cursor=listing.next_cursor, account=account
    )


@router.get(
    "/v1/members/{member_id}/stored-value/recharges",
    responses=problem_responses(400, 401, 404),
    summary="A member's recharges with the bonus each earned, newest first",
)
async def recharge_history(
    member_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, page: CursorParamsDep
) -> Page[RechargeOut]:
    member = await get_member(session, principal.merchant_id, member_id)
    recharge = StoredValueEntry
    bonus = aliased(StoredValueEntry)
    stmt = cast(
        "sa.Select[Any]",
        scoped_to_merchant(
            sa.select(
                recharge.id,
                recharge.created_at,
                recharge.payment_id,
                recharge.at_store_id,
                recharge.currency,
                recharge.principal,
                sa.func.coalesce(bonus.bonus, 0).label("bonus"),
            ),
            recharge,
            principal.merchant_id,
        )
        .outerjoin(
            bonus,
            sa.and_(
                bonus.merchant_id == recharge.merchant_id,
                bonus.kind == "bonus",
                bonus.source_id == recharge.source_id,
            ),
        )
        .where(recharge.member_id == member.id, recharge.kind == "recharge"),
    )

    def out(row: Any) -> RechargeOut:
        return RechargeOut(
            payment_id=row.payment_id,
            store_id=row.at_store_id,
            amount=Money.of(row.principal, row.currency),
            bonus=Money.of(int(row.bonus), row.currency),
            created_at=row.created_at,
        )

    return await paginate(
        session,
        stmt,
        order_by=(recharge.created_at, recharge.id),
        params=page,
        map=out,
        descending=True,
    )


@router.post(
    "/v1/members/{member_id}/stored-value/adjustments",
    status_code=201,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 401, 403, 404, 409, 422),
    summary="Correct a member's stored value by hand (signed changes, with a reason)",
)
async def adjust_stored_value(
    member_id: uuid.UUID, body: AdjustmentCreate, session: SessionDep, principal: ManageSettings
) -> LedgerEntryOut:
    member = await get_member(session, principal.merchant_id, member_id)
    entry = await service.adjust(
        session, member, principal=body.principal, bonus=body.bonus, note=body.note
    )
    return LedgerEntryOut.of(entry)
