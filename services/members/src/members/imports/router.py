"""HTTP endpoints of member import (``members:import``) and export (``members:export``).

``POST /v1/members/imports`` takes the file as the body and answers at once with the job;
rows are applied in the background: poll ``GET /v1/members/imports/{id}`` for progress and
``GET /v1/members/imports/{id}/rows`` for the result of each row."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from members.imports import service
from members.imports.reader import XLSX
from members.imports.schemas import ImportOut, ImportRowOut, RowStatus
from members.models import MemberImportRow
from servicekit.auth import Principal, require, scoped_to_merchant
from servicekit.errors import problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.pagination import CursorParamsDep, Page, paginate
from servicekit.tabular import MEDIA_TYPES, Format, download, language_of
from servicekit.uow import DatabaseDep, SessionDep

router = APIRouter(tags=["member import and export"], route_class=IdempotentRoute)

Importer = Annotated[Principal, Depends(require("members:import"))]
Exporter = Annotated[Principal, Depends(require("members:export"))]
FileFormat = Annotated[Format, Query(alias="format", description="csv or xlsx")]
Lang = Annotated[str | None, Query(pattern="^(zh|en)$", description="zh or en")]
AcceptLanguage = Annotated[str | None, Header(include_in_schema=False)]


@router.post(
    "/v1/members/imports",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(Idempotency())],
    responses={
        200: {"description": "This file was uploaded before: its job."},
        **problem_responses(401, 403, 409, 422),
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {}, XLSX: {}}},
    },
    summary="Import members from a CSV or XLSX file",
)
async def import_members(
    request: Request,
    response: Response,
    principal: Importer,
    session: SessionDep,
    background: BackgroundTasks,
) -> ImportOut:
    """Columns (Chinese or English headers): phone 手机号 (required), name 姓名, birthday
    生日, level 会员等级, tags 标签 (separated by commas), opening_points 期初积分,
    opening_stored_value_principal 期初储值本金 and opening_stored_value_bonus 期初储值赠送
    (major units, 100.50), stored_value_currency 储值币种 (CNY when blank). The same file
    again answers 200 with the job it already made."""
    content = await request.body()
    job, created = await service.start(
        session, principal, content, request.headers.get("content-type", "")
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    # After the response, so after the job's commit: the worker then finds it.
    background.add_task(service.wake_worker, request.app.state.runtime)
    return ImportOut.of(job)


@router.get(
    "/v1/members/imports/{import_id}",
    responses=problem_responses(401, 403, 404),
    summary="A member import's progress",
)
async def get_import(import_id: uuid.UUID, principal: Importer, session: SessionDep) -> ImportOut:
    return ImportOut.of(await service.get_job(session, principal.merchant_id, import_id))


@router.get(
    "/v1/members/imports/{import_id}/rows",
    responses=problem_responses(400, 401, 403, 404),
    summary="The result of each row processed so far, in file order",
)
async def import_rows(
    import_id: uuid.UUID,
    principal: Importer,
    session: SessionDep,
    page: CursorParamsDep,
    row_status: Annotated[RowStatus | None, Query(alias="status")] = None,
) -> Page[ImportRowOut]:
    job = await service.get_job(session, principal.merchant_id, import_id)
    stmt = scoped_to_merchant(sa.select(MemberImportRow), MemberImportRow, job.merchant_id).where(
        MemberImportRow.import_id == job.id
    )
    if row_status is not None:
        stmt = stmt.where(MemberImportRow.status == row_status)
    return await paginate(
        session,
        stmt,
        order_by=(MemberImportRow.row, MemberImportRow.import_id),
        params=page,
        map=ImportRowOut.of,
    )


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, streamed as an attachment.",
        "content": {media: {} for media in MEDIA_TYPES.values()},
    },
    **problem_responses(401, 403, 422),
}


@router.get(
    "/v1/members/export",
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
    summary="Every member with points, stored value, level, tags and coupons, as CSV or XLSX",
)
async def export_members(
    principal: Exporter,
    database: DatabaseDep,
    file_format: FileFormat = "csv",
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> StreamingResponse:
    """Oldest first, headers in Chinese (default) or English (``?lang=`` or
    ``Accept-Language``). The file imports back as it is (the points balance, stored-value
    and coupon columns are not import columns)."""
    kind: Literal["csv", "xlsx"] = file_format
    return download(
        service.member_sheets(database, principal.merchant_id),
        file_format=kind,
        language=language_of(lang, accept_language),
        filename="members",
    )
