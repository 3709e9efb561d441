"""HTTP endpoints of birthday benefits (merchant-wide settings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from members.birthdays import service
from members.birthdays.schemas import BirthdayBenefitOut, BirthdayBenefitUpdate
from servicekit.auth import Principal, PrincipalDep, require
from servicekit.errors import problem_responses
from servicekit.uow import SessionDep

router = APIRouter(tags=["birthdays"])

ManageSettings = Annotated[Principal, Depends(require("settings:manage"))]


@router.get("/v1/birthday-benefits", responses=problem_responses(401), summary="Birthday benefits")
async def get_benefit(session: SessionDep, principal: PrincipalDep) -> BirthdayBenefitOut:
    return BirthdayBenefitOut.of(await service.get_benefit(session, principal.merchant_id))


@router.put(
    "/v1/birthday-benefits",
    responses=problem_responses(401, 403, 409, 422),
    summary="Set the birthday points multiplier (orders paid from now on)",
)
async def put_benefit(
    body: BirthdayBenefitUpdate, session: SessionDep, principal: ManageSettings
) -> BirthdayBenefitOut:
    row = await service.set_benefit(
        session,
        principal.merchant_id,
        points_multiplier_bp=body.points_multiplier_bp,
        timezone=body.timezone,
        expected_version=body.version,
    )
    return BirthdayBenefitOut.of(row)
