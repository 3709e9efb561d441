"""HTTP endpoints of a merchant's fee rate and settlement accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from payments.deps import SettingsDep
from payments.settlement import service
from payments.settlement.schemas import (
    FeeConfigOut,
    FeeConfigUpdate,
    SettlementAccountCreate,
    SettlementAccountOut,
)
from servicekit.auth import Principal, require
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.uow import SessionDep

router = APIRouter(tags=["settlement"], route_class=IdempotentRoute)

ManageSettings = Annotated[Principal, Depends(require("settings:manage"))]


@router.get(
    "/v1/settlement/config",
    responses=problem_responses(401, 403),
    summary="The merchant's fee rate",
)
async def get_fee_config(
    session: SessionDep, principal: ManageSettings, settings: SettingsDep
) -> FeeConfigOut:
    config = await service.get_config(session, principal.merchant_id)
    if config is None:
        return FeeConfigOut(fee_rate_bps=settings.default_fee_rate_bps, is_default=True, version=0)
    return FeeConfigOut(fee_rate_bps=config.fee_rate_bps, is_default=False, version=config.version)


@router.put(
    "/v1/settlement/config",
    responses=problem_responses(401, 403, 409, 422),
    summary="Set the merchant's fee rate (applies to payments taken from now on)",
)
async def put_fee_config(
    body: FeeConfigUpdate, session: SessionDep, principal: ManageSettings
) -> FeeConfigOut:
    config = await service.set_fee_rate(
        session, principal.merchant_id, body.fee_rate_bps, body.version
    )
    return FeeConfigOut(fee_rate_bps=config.fee_rate_bps, is_default=False, version=config.version)


@router.post(
    "/v1/settlement/accounts",
    status_code=201,
    dependencies=[Depends(Idempotency(required=True))],
    responses=problem_responses(400, 401, 403, 422),
    summary="Register the merchant's settlement account (replaces the active one)",
)
async def register_account(
    body: SettlementAccountCreate, session: SessionDep, principal: ManageSettings
) -> SettlementAccountOut:
    account = await service.register_account(
        session,
        principal.merchant_id,
        kind=body.kind,
        institution=body.institution,
        account_number=body.account_number,
        holder_name=body.holder_name,
    )
    return SettlementAccountOut.of(account)


@router.get(
    "/v1/settlement/accounts",
    responses=problem_responses(401, 403),
    summary="The merchant's settlement accounts, newest first (numbers masked)",
)
async def list_accounts(
    session: SessionDep, principal: ManageSettings
) -> list[SettlementAccountOut]:
    return [
        SettlementAccountOut.of(a)
        for a in await service.list_accounts(session, principal.merchant_id)
    ]
