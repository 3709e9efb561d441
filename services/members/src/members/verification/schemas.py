"""Response bodies of batch verification."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class IssueOut(BaseModel):
    check: str
    code: str = Field(description="Stable: what is wrong.")
    detail: str
    fix: str = Field(description="What to do about it.")
    data: dict[str, Any]


class MemberIssuesOut(BaseModel):
    member_id: uuid.UUID
    phone: str = Field(description="Masked unless the caller holds members:write.")
    name: str | None
    issues: list[IssueOut]


class VerificationOut(BaseModel):
    checked_at: datetime
    import_id: uuid.UUID | None = Field(description="Only the members this import touched.")
    checks: list[str]
    members_checked: int
    members_with_issues: int
    counts: dict[str, int] = Field(description="Issues by code.")
    members: list[MemberIssuesOut] = Field(description="Oldest member first.")
