"""HTTP endpoints of bulk import (``/v1/product-imports``) and catalog export
(``/v1/catalog-export``)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, Field

from inventory.catalog.service import require_merchant_wide
from inventory.imports import service
from inventory.models import ProductImport
from servicekit.auth import Principal, require, scoped
from servicekit.errors import NotFound, problem_responses
from servicekit.idempotency import Idempotency, IdempotentRoute
from servicekit.uow import SessionDep

router = APIRouter(tags=["imports"], route_class=IdempotentRoute)

CatalogWriter = Annotated[Principal, Depends(require("catalog:manage"))]


class ImportOut(BaseModel):
    id: uuid.UUID
    dry_run: bool
    status: Literal["running", "completed"]
    total_rows: int
    processed_rows: int
    counts: dict[str, int] = Field(
        description="Rows by result: created, updated, unchanged, error."
    )
    results: list[dict[str, Any]] = Field(
        description="One per row processed so far: row, sku, status, product_id, errors."
    )
    created_at: datetime
    finished_at: datetime | None


def import_out(job: ProductImport, *, with_results: bool = True) -> ImportOut:
    return ImportOut(
        id=job.id,
        dry_run=job.dry_run,
        status=job.status,  # type: ignore[arg-type]
        total_rows=job.total_rows,
        processed_rows=job.processed_rows,
        counts=dict(Counter(result["status"] for result in job.results)),
        results=job.results if with_results else [],
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


@router.post(
    "/v1/product-imports",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(Idempotency())],
    responses=problem_responses(403, 409, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {}, service.XLSX: {}},
        }
    },
)
async def import_products(
    request: Request,
    principal: CatalogWriter,
    session: SessionDep,
    dry_run: Annotated[bool, Query(description="Check every row, change nothing.")] = False,
) -> ImportOut:
    """Upload a CSV or XLSX file of products (the body is the file; ``catalog:manage``,
    merchant-wide). Rows are applied in the background: follow ``GET
    /v1/product-imports/{id}`` for progress and the result of each row."""
    require_merchant_wide(principal)
    content = await request.body()
    job = await service.start(
        session, principal, content, request.headers.get("content-type", ""), dry_run
    )
    return import_out(job)


@router.get("/v1/product-imports/{import_id}", responses=problem_responses(404))
async def get_import(
    import_id: uuid.UUID, principal: CatalogWriter, session: SessionDep
) -> ImportOut:
    job = (
        await session.execute(
            scoped(sa.select(ProductImport), ProductImport, principal).where(
                ProductImport.id == import_id
            )
        )
    ).scalar_one_or_none()
    if job is None:
        raise NotFound("Import not found.", code="import_not_found")
    return import_out(job)


@router.get(
    "/v1/catalog-export",
    responses={200: {"content": {"text/csv": {}, service.XLSX: {}}}},
)
async def export_catalog(
    principal: CatalogWriter,
    session: SessionDep,
    file_format: Annotated[Literal["csv", "xlsx"], Query(alias="format")] = "csv",
) -> Response:
    """The catalog in the import's columns, so an edited export imports back
    (``catalog:manage``)."""
    rows = await service.export_rows(session, principal)
    if file_format == "xlsx":
        return Response(
            service.to_xlsx(rows),
            media_type=service.XLSX,
            headers={"Content-Disposition": 'attachment; filename="catalog.xlsx"'},
        )
    return Response(
        service.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="catalog.csv"'},
    )
