"""Response bodies of member imports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field

from members.models import MemberImport, MemberImportRow

RowStatus = Literal["created", "updated", "unchanged", "rejected"]


class ImportOut(BaseModel):
    id: uuid.UUID
    status: Literal["running", "completed"]
    total_rows: int
    processed_rows: int
    counts: dict[RowStatus, int] = Field(description="Rows processed so far, by result.")
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: MemberImport) -> ImportOut:
        counts: dict[RowStatus, int] = {
            status: int(job.counts.get(status, 0)) for status in get_args(RowStatus)
        }
        return cls(
            id=job.id,
            status=job.status,
            total_rows=job.total_rows,
            processed_rows=job.processed_rows,
            counts=counts,
            created_at=job.created_at,
            finished_at=job.finished_at,
        )


class ImportRowOut(BaseModel):
    row: int = Field(description="As the spreadsheet numbers it: the header is row 1.")
    status: RowStatus
    phone: str | None = Field(description="E.164 once read; as written when it could not be.")
    member_id: uuid.UUID | None
    code: str | None = Field(description="Why a rejected row was rejected.")
    detail: str | None
    changed: list[str] = Field(description="The fields an updated row changed.")

    @classmethod
    def of(cls, row: MemberImportRow) -> ImportRowOut:
        return cls(
            row=row.row,
            status=row.status,
            phone=row.phone,
            member_id=row.member_id,
            code=row.code,
            detail=row.detail,
            changed=list(row.changed or []),
        )
