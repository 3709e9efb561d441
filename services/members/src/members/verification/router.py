"""HTTP endpoint of batch verification (``members:import``): the report of what to fix per
member."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query

from members.imports.service import get_job
from members.member.schemas import mask_phone
from members.models import Member
from members.verification import service
from members.verification.schemas import IssueOut, MemberIssuesOut, VerificationOut
from servicekit.auth import Principal, require, scoped_to_merchant
from servicekit.errors import FieldError, ValidationFailed, problem_responses
from servicekit.uow import SessionDep

router = APIRouter(tags=["member verification"])

Importer = Annotated[Principal, Depends(require("members:import"))]


@router.get(
    "/v1/members/verification",
    responses=problem_responses(401, 403, 404, 422),
    summary="Batch verification of member data: what to fix, per member",
)
async def verification(
    session: SessionDep,
    principal: Importer,
    import_id: uuid.UUID | None = None,
    checks: Annotated[list[str] | None, Query(alias="check")] = None,
) -> VerificationOut:
    """Runs every check (or those named by ``check=``) over all the merchant's members, or
    the members an import created or updated (``import_id``)."""
    unknown = sorted(set(checks or []) - set(service.CHECKS))
    if unknown:
        raise ValidationFailed(
            [FieldError("check", "unknown_check", f"no check named {name}.") for name in unknown],
            code="unknown_check",
        )
    only = None
    if import_id is not None:
        job = await get_job(session, principal.merchant_id, import_id)
        only = await service.members_of_import(session, principal.merchant_id, job.id)
    report = await service.verify(session, principal.merchant_id, only, checks)
    reveal = principal.has("members:write")
    members = (
        await session.scalars(
            scoped_to_merchant(sa.select(Member), Member, principal.merchant_id)
            .where(Member.id.in_(list(report.issues)))
            .order_by(Member.created_at, Member.id)
        )
    ).all()
    counts = Counter(issue.code for found in report.issues.values() for _, issue in found)
    return VerificationOut(
        checked_at=datetime.now(UTC),
        import_id=import_id,
        checks=report.checks,
        members_checked=report.members_checked,
        members_with_issues=len(members),
        counts=dict(sorted(counts.items())),
        members=[
            MemberIssuesOut(
                member_id=m.id,
                phone=m.phone if reveal else mask_phone(m.phone),
                name=m.name,
                issues=[
                    IssueOut(check=name, code=i.code, detail=i.detail, fix=i.fix, data=i.data)
                    for name, i in report.issues[m.id]
                ],
            )
            for m in members
        ],
    )
