"""Batch verification finds exactly the seeded problems (duplicate phones once normalised,
invalid phones, points balances off their ledger, impossible birthdays), can be limited to
the members of an import, takes one more registered check, and shows nothing of another
merchant."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.ids import new_id
from members.models import Member
from members.verification import service

from .conftest import Harness
from .test_member_imports import csv_file, finished, upload

IMPORTER = frozenset({"members:import", "members:write"})


async def create(harness: Harness, merchant: uuid.UUID, phone: str, **fields: Any) -> uuid.UUID:
    response = await harness.create_member(merchant, phone, **fields)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def legacy(harness: Harness, merchant: uuid.UUID, phone: str) -> uuid.UUID:
    """A member another system wrote, phone as typed."""
    member_id = new_id()
    async with harness.app.state.database.transaction() as session:
        await session.execute(
            sa.insert(Member).values(
                id=member_id, merchant_id=merchant, phone=phone, tags=[], points_balance=0
            )
        )
    return member_id


async def report(harness: Harness, merchant: uuid.UUID, **params: Any) -> dict[str, Any]:
    response = await harness.client.get(
        "/v1/members/verification", params=params, headers=harness.token(merchant, IMPORTER)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def found(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m["member_id"], issue["code"]): issue for m in body["members"] for issue in m["issues"]
    }


async def test_each_check_finds_exactly_the_seeded_problems(harness: Harness) -> None:
    merchant = new_id()
    first = await create(harness, merchant, "+8613800138041")
    same_number = await legacy(harness, merchant, "138 0013 8041")
    no_number = await legacy(harness, merchant, "12345")
    off_ledger = await create(harness, merchant, "+8613800138042")
    async with harness.app.state.database.transaction() as session:
        await session.execute(
            sa.update(Member).where(Member.id == off_ledger).values(points_balance=77)
        )
    future = await create(harness, merchant, "+8613800138043", birthday="2999-01-01")
    ancient = await create(harness, merchant, "+8613800138044", birthday="1899-12-31")
    await create(harness, merchant, "+8613800138045", birthday="1900-01-01")
    # Opening points booked by an import match their ledger: no issue.
    job = await upload(harness, merchant, csv_file([["13800138046", "Imp", "", "", "", "30"]]))
    await finished(harness, merchant, job.json()["id"])

    body = await report(harness, merchant)
    assert body["checks"] == ["birthdays", "phones", "points"]
    assert body["members_checked"] == 8
    assert body["members_with_issues"] == 6
    assert body["counts"] == {
        "birthday_before_1900": 1,
        "birthday_in_future": 1,
        "duplicate_phone": 2,
        "invalid_phone": 1,
        "points_ledger_mismatch": 1,
    }
    issues = found(body)
    assert set(issues) == {
        (str(first), "duplicate_phone"),
        (str(same_number), "duplicate_phone"),
        (str(no_number), "invalid_phone"),
        (str(off_ledger), "points_ledger_mismatch"),
        (str(future), "birthday_in_future"),
        (str(ancient), "birthday_before_1900"),
    }
    duplicate = issues[(str(first), "duplicate_phone")]
    assert duplicate["check"] == "phones"
    assert duplicate["data"] == {
        "normalized_phone": "+8613800138041",
        "other_member_ids": [str(same_number)],
    }
    assert duplicate["fix"]
    assert issues[(str(off_ledger), "points_ledger_mismatch")]["data"] == {
        "balance": 77,
        "ledger_total": 0,
        "difference": 77,
    }
    # Oldest member first; phones shown to a caller who may change members.
    assert [m["member_id"] for m in body["members"]][:2] == [str(first), str(same_number)]
    assert body["members"][0]["phone"] == "+8613800138041"
    masked = await harness.client.get(
        "/v1/members/verification",
        headers=harness.token(merchant, frozenset({"members:import"})),
    )
    assert masked.json()["members"][0]["phone"] == "+86138****8041"

    only_points = await report(harness, merchant, check="points")
    assert only_points["counts"] == {"points_ledger_mismatch": 1}


async def test_limited_to_the_members_of_an_import(harness: Harness) -> None:
    merchant = new_id()
    await legacy(harness, merchant, "138-0013-8051")
    await create(harness, merchant, "+8613800138052", birthday="2999-01-01")
    job = await upload(
        harness,
        merchant,
        csv_file(
            [["13800138051", "", "", "", "", ""], ["13800138053", "New", "1800-01-01", "", "", ""]]
        ),
    )
    job_id = job.json()["id"]
    await finished(harness, merchant, job_id)
    # The file's phone matched no stored phone exactly (the legacy one is not normalised):
    # the import registered it, and verification shows the duplicate it made.
    body = await report(harness, merchant, import_id=job_id)
    assert body["import_id"] == job_id
    assert body["members_checked"] == 1
    assert body["counts"] == {"duplicate_phone": 1}
    everyone = await report(harness, merchant)
    assert everyone["counts"] == {"birthday_in_future": 1, "duplicate_phone": 2}


async def test_one_more_registered_check_is_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = new_id()
    member = await create(harness, merchant, "+8613800138061")

    async def stored_value(
        session: AsyncSession, merchant_id: uuid.UUID, only: service.Only
    ) -> list[service.Issue]:
        ids = await session.scalars(sa.select(Member.id).where(Member.merchant_id == merchant_id))
        return [service.Issue(i, "stored_value_ledger_mismatch", "off", "fix it", {}) for i in ids]

    monkeypatch.setitem(service.CHECKS, "stored_value", stored_value)
    body = await report(harness, merchant)
    assert "stored_value" in body["checks"]
    assert body["counts"] == {"stored_value_ledger_mismatch": 1}
    assert body["members"][0]["member_id"] == str(member)
    with pytest.raises(ValueError, match="already registered"):
        service.check("points")(stored_value)


async def test_other_merchants_and_bad_requests(harness: Harness) -> None:
    owner, intruder = new_id(), new_id()
    await create(harness, owner, "+8613800138071", birthday="2999-01-01")
    job = await upload(harness, owner, csv_file([["13800138072", "", "", "", "", ""]]))
    await finished(harness, owner, job.json()["id"])

    theirs = await report(harness, intruder)
    assert (theirs["members_checked"], theirs["members"]) == (0, [])
    hidden = await harness.client.get(
        "/v1/members/verification",
        params={"import_id": job.json()["id"]},
        headers=harness.token(intruder, IMPORTER),
    )
    assert hidden.status_code == 404
    unknown = await harness.client.get(
        "/v1/members/verification",
        params={"check": "nonsense"},
        headers=harness.token(owner, IMPORTER),
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_check"
    denied = await harness.client.get(
        "/v1/members/verification", headers=harness.token(owner, frozenset({"members:write"}))
    )
    assert denied.status_code == 403
